//! Which pending requests render together: those with equal keys (model and
//! [`crate::generate::BatchKey`]), up to `--batch-size` images per group.

use std::collections::HashMap;
use std::hash::Hash;

/// Requests rendered by one [`crate::generate::Engine::render`] call, in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group<T> {
    /// The requests, in input order.
    pub items: Vec<T>,
    /// Their images, together.
    pub images: usize,
}

/// Groups `(key, images, item)` triples: items with equal keys join the key's open group while
/// it stays within `batch_size` images; otherwise they open a new one. A request with more
/// images than `batch_size` is a group of its own (the engine splits its model calls itself).
/// Groups come in the order of their first item, items in input order within a group.
pub fn group<K: Eq + Hash, T>(
    items: impl IntoIterator<Item = (K, usize, T)>,
    batch_size: usize,
) -> Vec<Group<T>> {
    let batch_size = batch_size.max(1);
    let mut groups: Vec<Group<T>> = Vec::new();
    let mut open: HashMap<K, usize> = HashMap::new();
    for (key, images, item) in items {
        if images > batch_size {
            groups.push(Group { items: vec![item], images });
            continue;
        }
        if let Some(&index) = open.get(&key) {
            let group = &mut groups[index];
            if group.images + images <= batch_size {
                group.items.push(item);
                group.images += images;
                continue;
            }
        }
        open.insert(key, groups.len());
        groups.push(Group { items: vec![item], images });
    }
    groups
}

/// Stably reorders groups so that those of one model come together, models in the order they
/// first appear: each model is loaded once, and only one checkpoint from `--assets` needs to be
/// held at a time.
pub fn cluster_by<T, M: Eq + Hash + Clone>(groups: &mut [Group<T>], model_of: impl Fn(&Group<T>) -> M) {
    let mut rank: HashMap<M, usize> = HashMap::new();
    for group in groups.iter() {
        let next = rank.len();
        rank.entry(model_of(group)).or_insert(next);
    }
    groups.sort_by_key(|group| rank[&model_of(group)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, images, name) → the names of each group.
    fn names(items: &[(&'static str, usize, &'static str)], batch_size: usize) -> Vec<Vec<&'static str>> {
        group(items.iter().copied(), batch_size).into_iter().map(|g| g.items).collect()
    }

    #[test]
    fn equal_keys_share_a_group_in_first_appearance_order() {
        let items = [("a", 1, "a1"), ("b", 1, "b1"), ("a", 2, "a2"), ("c", 1, "c1"), ("b", 1, "b2")];
        assert_eq!(names(&items, 8), [vec!["a1", "a2"], vec!["b1", "b2"], vec!["c1"]]);
        let groups = group(items.iter().copied(), 8);
        assert_eq!(groups.iter().map(|g| g.images).collect::<Vec<_>>(), [3, 2, 1]);
    }

    #[test]
    fn groups_stay_within_the_batch_size() {
        let items = [("a", 2, "1"), ("a", 1, "2"), ("a", 2, "3"), ("a", 1, "4"), ("a", 3, "5")];
        // 2+1 = 3 fits; 3+2 does not: a new group opens and the next items join it.
        assert_eq!(names(&items, 3), [vec!["1", "2"], vec!["3", "4"], vec!["5"]]);
        // Batch size 1: every request alone, in input order.
        let single = [("a", 1, "1"), ("b", 1, "2"), ("a", 1, "3")];
        assert_eq!(names(&single, 1), [vec!["1"], vec!["2"], vec!["3"]]);
    }

    #[test]
    fn a_request_larger_than_the_batch_goes_alone() {
        let items = [("a", 1, "1"), ("a", 5, "big"), ("a", 1, "2")];
        let groups = group(items.iter().copied(), 4);
        assert_eq!(groups.iter().map(|g| g.items.clone()).collect::<Vec<_>>(), [vec!["1", "2"], vec!["big"]]);
        assert_eq!(groups[1].images, 5);
        // A batch size of 0 is treated as 1 rather than looping or dropping requests.
        assert_eq!(names(&[("a", 1, "x"), ("a", 1, "y")], 0), [vec!["x"], vec!["y"]]);
    }

    #[test]
    fn clustering_keeps_each_models_groups_together_in_order() {
        // Keys are (model, size); items name their model first.
        let items = [
            (("m1", 512), 1, "m1-512-a"),
            (("m2", 512), 1, "m2-512"),
            (("m1", 768), 1, "m1-768"),
            (("m1", 512), 1, "m1-512-b"),
            (("m3", 512), 1, "m3-512"),
            (("m2", 768), 1, "m2-768"),
        ];
        let mut groups = group(items, 8);
        cluster_by(&mut groups, |g| g.items[0].split('-').next().unwrap().to_owned());
        let order: Vec<Vec<&str>> = groups.into_iter().map(|g| g.items).collect();
        assert_eq!(
            order,
            [vec!["m1-512-a", "m1-512-b"], vec!["m1-768"], vec!["m2-512"], vec!["m2-768"], vec!["m3-512"]]
        );
    }
}
