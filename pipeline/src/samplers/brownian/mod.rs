//! torchsde's Brownian tree, value for value: the noise diffusers' `DPMSolverSDEScheduler`
//! (`DPM_PLUS_PLUS_SDE_KARRAS`) draws through its `BrownianTreeNoiseSampler`, so a kiln image
//! equals diffusers' for the same seed.
//!
//! How torchsde 0.2.6 builds it (`BrownianInterval(t0, t1, size, entropy, tol=1e-6,
//! pool_size=24, halfway_tree=True)`, diffusers' settings, no Lévy area):
//! - the root's increment `W(t0, t1)` is `randn(size)` from a torch CPU generator seeded with
//!   the first word of `SeedSequence(entropy, pool_size=24).generate_state(3)`, times
//!   `sqrt(t1 - t0)` (unrounded ends);
//! - times are rounded to 6 decimals (`round(x, 6)`); every interval splits at its rounded
//!   halfway point ([`interval`]); a query `[ta, tb]` is cut into tree nodes and their
//!   increments are summed left to right;
//! - a child's increment comes from its parent's by the Brownian bridge: with the parent's
//!   `W`, `h = end - start`, `l = mid - start`, `r = end - mid` and standard normals `z` drawn
//!   from a generator seeded with the first word of
//!   `SeedSequence(entropy, spawn_key=(key, depth), pool_size=24).generate_state(4)` (the
//!   parent's key and depth), the left half is `W * l * (1/h) + sqrt(l * r / h) * z` and the
//!   right half `W - left`. Scalars are f64 rounded to f32 where they meet the f32 tensor, as
//!   torch's tensor-by-Python-float ops do.
//!
//! torchsde caches recent nodes only for speed (the values never depend on it); kiln keeps the
//! nodes of the last path walked from the root, which serves the nearby consecutive queries of
//! a sampler.

pub mod interval;

use crate::rng::TorchGenerator;
use crate::rng::seed_sequence::SeedSequence;

use interval::{Node, cover, round_decimal};

/// torchsde's tolerance in diffusers' trees (`tol=1e-6`): times keep 6 decimals.
const NDIGITS: usize = 6;
/// diffusers' `pool_size=24`.
const POOL_SIZE: usize = 24;

/// A query the tree cannot answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BrownianError {
    /// `ta > tb` (torchsde raises too).
    #[error("Brownian increment asked from {ta} to {tb}: the start is after the end")]
    Reversed {
        /// Query start.
        ta: f64,
        /// Query end.
        tb: f64,
    },
    /// A time was not a finite number.
    #[error("Brownian tree time {0} is not finite")]
    NotFinite(f64),
    /// The query cuts the tree deeper than kiln follows.
    #[error("Brownian increment from {ta} to {tb} needs more than {max} tree levels")]
    TooDeep {
        /// Query start.
        ta: f64,
        /// Query end.
        tb: f64,
        /// The depth limit.
        max: u32,
    },
}

/// One Brownian path over `[t0, t1]` of tensors of a fixed torch shape, seeded by `entropy`.
pub struct BrownianTree {
    entropy: u128,
    /// torch shape of every increment (NCHW for latents).
    shape: Vec<usize>,
    root: Node,
    /// Nodes of the last path walked from the root, root first, with their increments.
    path: Vec<(Node, Vec<f32>)>,
}

impl BrownianTree {
    /// torchsde's `BrownianInterval(t0, t1, size=shape, entropy=entropy, tol=1e-6,
    /// pool_size=24, halfway_tree=True)`; `t0 <= t1`.
    pub fn new(entropy: u64, t0: f64, t1: f64, shape: &[usize]) -> Result<BrownianTree, BrownianError> {
        for t in [t0, t1] {
            if !t.is_finite() {
                return Err(BrownianError::NotFinite(t));
            }
        }
        if t0 > t1 {
            return Err(BrownianError::Reversed { ta: t0, tb: t1 });
        }
        let entropy = u128::from(entropy);
        let seeds = SeedSequence::new(entropy, &[], POOL_SIZE).generate_state(1);
        let scale = (t1 - t0).sqrt() as f32;
        let root_w: Vec<f32> = randn(seeds[0], shape).into_iter().map(|z| z * scale).collect();
        let root = Node::root(round_decimal(t0, NDIGITS), round_decimal(t1, NDIGITS));
        Ok(BrownianTree { entropy, shape: shape.to_vec(), root, path: vec![(root, root_w)] })
    }

    /// `W(tb) - W(ta)` in torch's flat order, like calling the torchsde tree with `(ta, tb)`:
    /// times outside `[t0, t1]` are clamped (torchsde warns), `ta == tb` gives zeros.
    pub fn increment(&mut self, ta: f64, tb: f64) -> Result<Vec<f32>, BrownianError> {
        for t in [ta, tb] {
            if !t.is_finite() {
                return Err(BrownianError::NotFinite(t));
            }
        }
        let clamp = |t: f64| t.max(self.root.start).min(self.root.end);
        let (a, b) = (clamp(ta), clamp(tb));
        if a > b {
            return Err(BrownianError::Reversed { ta, tb });
        }
        let numel = self.shape.iter().product();
        if a == b {
            return Ok(vec![0.0; numel]);
        }
        let (a, b) = (round_decimal(a, NDIGITS), round_decimal(b, NDIGITS));
        let nodes = cover(self.root, a, b, NDIGITS).ok_or(BrownianError::TooDeep {
            ta,
            tb,
            max: interval::MAX_DEPTH,
        })?;
        let mut total: Option<Vec<f32>> = None;
        for node in nodes {
            let w = self.node_increment(node);
            total = Some(match total {
                None => w,
                Some(sum) => sum.iter().zip(&w).map(|(s, x)| s + x).collect(),
            });
        }
        Ok(total.unwrap_or_else(|| vec![0.0; numel]))
    }

    /// The increment over `node`, walked down from the deepest cached ancestor.
    fn node_increment(&mut self, node: Node) -> Vec<f32> {
        // Keep the cached path while it is a prefix of the way to `node`.
        let keep = self
            .path
            .iter()
            .take_while(|(n, _)| {
                n.depth <= node.depth && node.ancestor_key(node.depth - n.depth) == (n.spawn_key, n.depth)
            })
            .count();
        self.path.truncate(keep.max(1));
        while self.path.last().map(|(n, _)| n.depth) != Some(node.depth) {
            let (parent, parent_w) = self.path.last().expect("the root stays cached");
            let right = node.ancestor_key(node.depth - parent.depth - 1).0 & 1 == 1;
            let child = parent.child(right, NDIGITS);
            let w = self.bridge(parent, parent_w, right);
            self.path.push((child, w));
        }
        self.path.last().expect("just walked").1.clone()
    }

    /// A child's increment from its parent's: the Brownian bridge at the parent's midpoint.
    fn bridge(&self, parent: &Node, parent_w: &[f32], right: bool) -> Vec<f32> {
        let mid = parent.midway(NDIGITS);
        let h_reciprocal = 1.0 / (parent.end - parent.start);
        let left_diff = mid - parent.start;
        let right_diff = parent.end - mid;
        let std = (left_diff * right_diff * h_reciprocal).sqrt() as f32;
        let (l, hr) = (left_diff as f32, h_reciprocal as f32);
        let seeds = SeedSequence::new(self.entropy, &[parent.spawn_key, u128::from(parent.depth)], POOL_SIZE)
            .generate_state(1);
        let noise = randn(seeds[0], &self.shape);
        parent_w
            .iter()
            .zip(&noise)
            .map(|(&w, &z)| {
                let left = w * l * hr + std * z;
                if right { w - left } else { left }
            })
            .collect()
    }
}

/// `torch.randn(shape, generator=torch.Generator().manual_seed(seed))`.
fn randn(seed: u32, shape: &[usize]) -> Vec<f32> {
    TorchGenerator::new(u64::from(seed)).randn_nchw(shape)
}

/// diffusers' `BrownianTreeNoiseSampler` for one image: a tree over `[sigma_min, sigma_max]`
/// whose increment from `sigma` to `sigma_next` is divided by `sqrt(|sigma_next - sigma|)`, a
/// standard normal per element, correlated across steps as one Brownian path.
pub struct BrownianNoise {
    tree: BrownianTree,
    /// -1 when diffusers' tree was built with its ends swapped (`sigma_min == sigma_max`).
    sign: f32,
}

impl BrownianNoise {
    /// The tree diffusers builds at the first step (`sigma_min`: the smallest non-zero sigma).
    pub fn new(
        entropy: u64,
        sigma_min: f32,
        sigma_max: f32,
        shape: &[usize],
    ) -> Result<BrownianNoise, BrownianError> {
        let (t0, t1, sign) = sort(sigma_min, sigma_max);
        Ok(BrownianNoise { tree: BrownianTree::new(entropy, f64::from(t0), f64::from(t1), shape)?, sign })
    }

    /// The normalised increment from `sigma` to `sigma_next` (torch order, f32).
    pub fn sample(&mut self, sigma: f32, sigma_next: f32) -> Result<Vec<f32>, BrownianError> {
        let (ta, tb, sign) = sort(sigma, sigma_next);
        let w = self.tree.increment(f64::from(ta), f64::from(tb))?;
        let sign = self.sign * sign;
        let scale = (sigma_next - sigma).abs().sqrt();
        Ok(w.into_iter().map(|x| x * sign / scale).collect())
    }
}

/// diffusers' `BatchedBrownianTree.sort`: the pair in order and -1 if it was swapped (ties too).
fn sort(a: f32, b: f32) -> (f32, f32, f32) {
    if a < b { (a, b, 1.0) } else { (b, a, -1.0) }
}
