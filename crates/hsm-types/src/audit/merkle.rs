//! RFC 6962 / RFC 9162 Merkle trees over audit records: leaf and node hashes with
//! domain separation (0x00 and 0x01 prefixes), the tree head of any prefix of the log,
//! an append-only frontier that keeps O(log n) hashes, and inclusion and consistency
//! proofs with their verification (RFC 9162 §2.1.3 and §2.1.4, word for word).
//!
//! The hash function is the caller's ([`Sha256`]): the core passes aws-lc-rs, the tests
//! an independent implementation.

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// SHA-256 over the concatenation of `parts`.
pub trait Sha256 {
    fn digest(parts: &[&[u8]]) -> Hash;
}

pub fn leaf_hash<H: Sha256>(data: &[u8]) -> Hash {
    H::digest(&[&[0x00], data])
}

pub fn node_hash<H: Sha256>(left: &Hash, right: &Hash) -> Hash {
    H::digest(&[&[0x01], left, right])
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The tree head of leaves whose leaf hashes are `leaves` (MTH of RFC 6962 §2.1).
pub fn root<H: Sha256>(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => H::digest(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash::<H>(&root::<H>(&leaves[..k]), &root::<H>(&leaves[k..]))
        }
    }
}

/// The roots of the perfect subtrees a log of `size` leaves decomposes into, largest
/// first: enough to append and to compute the tree head, without the leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    pub subtrees: Vec<Hash>,
}

impl Frontier {
    pub fn push<H: Sha256>(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self
                .subtrees
                .pop()
                .expect("one subtree per set bit of the size");
            h = node_hash::<H>(&left, &h);
            size >>= 1;
        }
        self.subtrees.push(h);
        self.size += 1;
    }

    pub fn root<H: Sha256>(&self) -> Hash {
        let mut it = self.subtrees.iter().rev();
        let Some(last) = it.next() else {
            return H::digest(&[]);
        };
        it.fold(*last, |acc, left| node_hash::<H>(left, &acc))
    }
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof<H: Sha256>(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut p = inclusion_proof::<H>(index, &leaves[..k]);
        p.push(root::<H>(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof::<H>(index - k, &leaves[k..]);
        p.push(root::<H>(&leaves[..k]));
        p
    }
}

/// Whether `leaf` is at `index` in the tree of `size` leaves whose head is `root`.
pub fn verify_inclusion<H: Sha256>(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash::<H>(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash::<H>(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// The proof that the tree of the first `m` leaves is a prefix of the tree of all
/// `leaves` (RFC 9162 §2.1.4.1).
pub fn consistency_proof<H: Sha256>(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn sub<H: Sha256>(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole {
                Vec::new()
            } else {
                vec![root::<H>(leaves)]
            };
        }
        let k = split(n);
        if m <= k {
            let mut p = sub::<H>(m, &leaves[..k], whole);
            p.push(root::<H>(&leaves[k..]));
            p
        } else {
            let mut p = sub::<H>(m - k, &leaves[k..], false);
            p.push(root::<H>(&leaves[..k]));
            p
        }
    }
    if m == 0 || m > leaves.len() {
        return Vec::new();
    }
    sub::<H>(m, leaves, true)
}

/// Whether the tree of `first` leaves with head `first_root` is a prefix of the tree of
/// `second` leaves with head `second_root`, by `proof`.
pub fn verify_consistency<H: Sha256>(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash::<H>(c, &fr);
            sr = node_hash::<H>(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash::<H>(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *first_root && sr == *second_root && snode == 0
}
