//! The nodes of torchsde's halfway Brownian tree (`BrownianInterval(halfway_tree=True)`): each
//! interval splits at its rounded midpoint, so the tree depends only on its end points and the
//! tolerance, never on the order of the queries. A node is named as torchsde names it for
//! seeding: `spawn_key` (the left/right turns from the root as bits, 0 = left) and `depth`.

/// Python's `round(x, ndigits)` for ndigits >= 0: the double nearest to `x`'s exact value
/// rounded to `ndigits` decimals, exact ties to even (Rust's fixed-precision formatting is
/// exact and rounds ties to even, and parsing is correctly rounded, as CPython's dtoa).
pub fn round_decimal(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.ndigits$}").parse().unwrap_or(x)
}

/// One interval of the tree, end points already rounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    /// Left end.
    pub start: f64,
    /// Right end.
    pub end: f64,
    /// Turns from the root, most significant first (torchsde's `_spawn_key`).
    pub spawn_key: u128,
    /// Levels below the root.
    pub depth: u32,
}

/// How deep a query may descend before kiln gives up (torchsde stops at the tolerance, ~24
/// levels for diffusers' sigma ranges; the key is a u128).
pub const MAX_DEPTH: u32 = 120;

impl Node {
    /// The whole interval.
    pub fn root(start: f64, end: f64) -> Node {
        Node { start, end, spawn_key: 0, depth: 0 }
    }

    /// Where the node splits: the rounded halfway point (torchsde's `_midway`).
    pub fn midway(&self, ndigits: usize) -> f64 {
        round_decimal(0.5 * (self.end + self.start), ndigits)
    }

    /// The left or right half.
    pub fn child(&self, right: bool, ndigits: usize) -> Node {
        let mid = self.midway(ndigits);
        let (start, end) = if right { (mid, self.end) } else { (self.start, mid) };
        Node { start, end, spawn_key: 2 * self.spawn_key + u128::from(right), depth: self.depth + 1 }
    }

    /// Whether `self` is the right child of its parent (the root is not).
    pub fn is_right(&self) -> bool {
        self.depth > 0 && self.spawn_key & 1 == 1
    }

    /// The ancestor `levels` above (or the node itself for 0).
    pub fn ancestor_key(&self, levels: u32) -> (u128, u32) {
        (self.spawn_key >> levels, self.depth - levels)
    }
}

/// The nodes whose union is `[ta, tb]`, left to right, as torchsde's `_loc` finds them (the
/// query cut at every midpoint it straddles, each piece descended until it is a node). `None`
/// when a piece would need more than [`MAX_DEPTH`] levels.
pub fn cover(root: Node, ta: f64, tb: f64, ndigits: usize) -> Option<Vec<Node>> {
    let mut out = Vec::new();
    // Pieces still to place, each with the deepest node known to contain it; right pieces are
    // pushed first so the stack yields left to right.
    let mut todo = vec![(root, ta, tb)];
    while let Some((mut node, a, b)) = todo.pop() {
        loop {
            if a == node.start && b == node.end {
                out.push(node);
                break;
            }
            if node.depth >= MAX_DEPTH {
                return None;
            }
            let mid = node.midway(ndigits);
            if b <= mid {
                node = node.child(false, ndigits);
            } else if a >= mid {
                node = node.child(true, ndigits);
            } else {
                todo.push((node.child(true, ndigits), mid, b));
                node = node.child(false, ndigits);
                todo.push((node, a, mid));
                break;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_python_round() {
        assert_eq!(round_decimal(0.0078125, 6), 0.007812); // exact tie: to even
        assert_eq!(round_decimal(0.0234375, 6), 0.023438); // exact tie: to even
        assert_eq!(round_decimal(14.614640235900879, 6), 14.61464);
        assert_eq!(round_decimal(0.5, 0), 0.0);
    }

    #[test]
    fn a_query_straddling_midpoints_is_cut_there() {
        let root = Node::root(0.0, 1.0);
        let nodes = cover(root, 0.25, 1.0, 6).unwrap();
        let spans: Vec<(f64, f64)> = nodes.iter().map(|n| (n.start, n.end)).collect();
        assert_eq!(spans, vec![(0.25, 0.5), (0.5, 1.0)]);
        assert_eq!((nodes[0].spawn_key, nodes[0].depth), (1, 2));
        assert_eq!((nodes[1].spawn_key, nodes[1].depth), (1, 1));
    }
}
