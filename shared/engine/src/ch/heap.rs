//! The priority queue of the upward searches: an indexed 4-ary min-heap with decrease-key.
//!
//! A `BinaryHeap` with lazy deletion pushes a node again every time its distance improves
//! and skips the stale entries when they come out: on Porto about 210 pushes and pops per
//! point-to-point query that settles 143 nodes, and its `pop` was a third of the query's
//! instructions. Here each node is in the heap at most once and an improvement moves it up
//! in place; four children per node halve the depth.

use crate::weight::Weight;

/// Marks a node whose position is unknown (never pushed since the heap was created).
const NOWHERE: u32 = u32::MAX;
const ARITY: usize = 4;

/// Fills every slot past the end of the heap: larger than any entry, so a node whose last
/// group of children is partial can be compared as a full group.
const VACANT: u128 = u128::MAX;

/// Indexed 4-ary min-heap of nodes `0..n` keyed by [`Weight`].
///
/// Entries are ordered by weight, then by node id: the same total order as a
/// `BinaryHeap<Reverse<(Weight, u32)>>`, so the searches take nodes off in exactly the order
/// they did with lazy deletion, and ties between equal weights (which decide the parent arcs
/// and the meeting node) break the same way.
#[derive(Debug, Clone)]
pub(crate) struct MinHeap {
    /// `weight << 32 | node`: one integer comparison orders by weight, then node. Slots
    /// `len..` hold [`VACANT`], at least `ARITY - 1` of them, so that sifting down always
    /// compares a full group of children: a partial last group was a separate path whose
    /// branches the predictor missed on about a third of the pops.
    entries: Vec<u128>,
    len: usize,
    /// Where each node sits in `entries`. Not reset by [`MinHeap::clear`]: a position is
    /// believed only if it is inside the heap and the entry there names the node, and since
    /// a node is in the heap at most once and every move updates its position, a stale one
    /// can never pass that check.
    pos: Vec<u32>,
}

fn pack(key: Weight, node: u32) -> u128 {
    (u128::from(key.0) << 32) | u128::from(node)
}

fn node_of(entry: u128) -> u32 {
    entry as u32
}

fn key_of(entry: u128) -> Weight {
    Weight((entry >> 32) as u64)
}

impl MinHeap {
    /// An empty heap for nodes `0..n`.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            entries: vec![VACANT; ARITY],
            len: 0,
            pos: vec![NOWHERE; n],
        }
    }

    /// Empties the heap, in time proportional to what was left in it.
    pub(crate) fn clear(&mut self) {
        self.entries[..self.len].fill(VACANT);
        self.len = 0;
    }

    /// Number of nodes in the heap.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The position of `node` if it is in the heap.
    fn position(&self, node: u32) -> Option<usize> {
        let i = *self.pos.get(node as usize)? as usize;
        (i < self.len && node_of(self.entries[i]) == node).then_some(i)
    }

    /// The key of `node` if it is in the heap.
    #[cfg(test)]
    pub(crate) fn key(&self, node: u32) -> Option<Weight> {
        self.position(node).map(|i| key_of(self.entries[i]))
    }

    /// Inserts `node`, which must not be in the heap (the searches know from their own
    /// per-node state; checked in debug builds). Returns false, doing nothing, for a node
    /// outside `0..n`.
    #[inline(always)]
    pub(crate) fn push(&mut self, node: u32, key: Weight) -> bool {
        if node as usize >= self.pos.len() {
            return false;
        }
        debug_assert!(self.position(node).is_none(), "node {node} pushed twice");
        let hole = self.len;
        self.len += 1;
        if self.entries.len() < self.len + ARITY - 1 {
            self.entries.push(VACANT);
        }
        self.sift_up(hole, pack(key, node));
        true
    }

    /// Lowers the key of `node` if it is in the heap with a higher one; returns whether it
    /// is in the heap.
    #[inline(always)]
    pub(crate) fn decrease(&mut self, node: u32, key: Weight) -> bool {
        let Some(i) = self.position(node) else {
            return false;
        };
        let entry = pack(key, node);
        if entry < self.entries[i] {
            self.sift_up(i, entry);
        }
        true
    }

    /// Inserts `node` with `key`, or lowers its key if it is already in the heap with a
    /// higher one (a higher `key` leaves it as it is). Returns false, doing nothing, for a
    /// node outside `0..n`.
    pub(crate) fn push_or_decrease(&mut self, node: u32, key: Weight) -> bool {
        self.decrease(node, key) || self.push(node, key)
    }

    /// The smallest key and its node, without removing it.
    pub(crate) fn peek(&self) -> Option<(Weight, u32)> {
        (self.len > 0).then(|| (key_of(self.entries[0]), node_of(self.entries[0])))
    }

    /// Removes and returns the smallest key and its node.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<(Weight, u32)> {
        self.len = self.len.checked_sub(1)?;
        let top = self.entries[0];
        let last = std::mem::replace(&mut self.entries[self.len], VACANT);
        if self.len > 0 {
            self.sift_down(0, last);
        }
        Some((key_of(top), node_of(top)))
    }

    /// Places `entry` at hole `i` or above it, moving larger parents down.
    #[inline(always)]
    fn sift_up(&mut self, mut i: usize, entry: u128) {
        while i > 0 {
            let parent = (i - 1) / ARITY;
            let p = self.entries[parent];
            if p <= entry {
                break;
            }
            self.put(i, p);
            i = parent;
        }
        self.put(i, entry);
    }

    /// Places `entry` at hole `i` or below it, moving smaller children up.
    #[inline]
    fn sift_down(&mut self, mut i: usize, entry: u128) {
        loop {
            let first = ARITY * i + 1;
            if first >= self.len {
                break;
            }
            // A full group always: slots past the end are vacant, larger than any entry.
            // Entries are distinct (one per node), so which of two equal ones wins does not
            // matter. Indices rather than entries are carried through the comparisons: an
            // entry takes two registers, and keeping four of them live spilled to the stack.
            let Some(c) = self.entries.get(first..first + ARITY) else {
                break;
            };
            let a = usize::from(c[1] < c[0]);
            let b = 2 + usize::from(c[3] < c[2]);
            let m = if c[b] < c[a] { b } else { a };
            let (best, best_entry) = (first + m, c[m]);
            if entry <= best_entry {
                break;
            }
            self.put(i, best_entry);
            i = best;
        }
        self.put(i, entry);
    }

    #[inline]
    fn put(&mut self, i: usize, entry: u128) {
        self.entries[i] = entry;
        self.pos[node_of(entry) as usize] = i as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    /// Random pushes, decreases, increases (which must be ignored) and pops against a sorted
    /// set of (weight, node); the heap must agree on every pop and peek.
    #[test]
    fn agrees_with_a_sorted_set_under_random_decrease_keys() {
        let n = 200u32;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut heap = MinHeap::new(n as usize);
        for round in 0..50 {
            heap.clear();
            let mut set: BTreeSet<(Weight, u32)> = BTreeSet::new();
            let mut keys: HashMap<u32, Weight> = HashMap::new();
            for _ in 0..2_000 {
                match next() % 8 {
                    0..=4 => {
                        let v = (next() % u64::from(n)) as u32;
                        // Few distinct keys, so ties between nodes are common.
                        let k = Weight(next() % (20 + 10 * round));
                        assert!(heap.push_or_decrease(v, k));
                        match keys.get(&v) {
                            Some(&old) if k < old => {
                                set.remove(&(old, v));
                                set.insert((k, v));
                                keys.insert(v, k);
                            }
                            Some(_) => {}
                            None => {
                                set.insert((k, v));
                                keys.insert(v, k);
                            }
                        }
                    }
                    _ => {
                        let want = set.pop_first();
                        if let Some((_, v)) = want {
                            keys.remove(&v);
                        }
                        assert_eq!(heap.pop(), want);
                    }
                }
                assert_eq!(heap.peek(), set.first().copied());
                assert_eq!(heap.len(), set.len());
            }
            for (&v, &k) in &keys {
                assert_eq!(heap.key(v), Some(k));
            }
        }
    }

    #[test]
    fn pops_in_order_and_rejects_nodes_out_of_range() {
        let mut heap = MinHeap::new(10);
        assert!(!heap.push_or_decrease(10, Weight(1)));
        for v in (0..10).rev() {
            assert!(heap.push_or_decrease(v, Weight(u64::from(v % 3))));
        }
        assert!(heap.push_or_decrease(8, Weight(0)));
        assert!(heap.push_or_decrease(1, Weight(2)));
        let order: Vec<_> = std::iter::from_fn(|| heap.pop()).collect();
        let want: Vec<_> = [0, 3, 6, 8, 9, 1, 4, 7, 2, 5]
            .iter()
            .map(|&v| (Weight(u64::from(v % 3) * u64::from(v != 8)), v))
            .collect();
        assert_eq!(order, want);
        assert_eq!(heap.pop(), None);
        // A cleared heap must not believe positions left from before.
        heap.push_or_decrease(4, Weight(5));
        heap.clear();
        heap.push_or_decrease(7, Weight(9));
        assert_eq!(heap.key(4), None);
        assert_eq!(heap.pop(), Some((Weight(9), 7)));
    }
}
