//! The gallery: every enrolled embedding, in memory, searched by dot product.
//!
//! Rows are L2-normalised, so a dot product is the cosine similarity. A person
//! may own several rows (one per enrolled photo); a search scores each person
//! by their best row and reports the best person, their score and the margin
//! to the second-best person. The gallery is a cache of the store: the store
//! is written first, and the gallery only changes once the store has.

use std::collections::HashMap;
use std::sync::RwLock;

/// One enrolled face: whose it is, which stored face row it mirrors, and its
/// L2-normalised embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct GalleryRow {
    pub person_id: String,
    pub person_name: String,
    pub face_id: String,
    pub embedding: Vec<f32>,
}

/// The best and second-best people for a query embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidates {
    pub best: Candidate,
    pub second: Option<Candidate>,
}

impl Candidates {
    /// How far the best person is ahead of the second (the best score itself
    /// when there is no second person).
    pub fn margin(&self) -> f32 {
        self.best.score - self.second.as_ref().map_or(0.0, |second| second.score)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub person_id: String,
    pub person_name: String,
    /// Cosine similarity of the person's best row to the query.
    pub score: f32,
}

/// The rule that turns candidates into an identity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchPolicy {
    /// The lowest cosine similarity that counts as the same person.
    pub threshold: f32,
    /// How far the best person must be ahead of the second; a face that fits
    /// two people about equally well is reported as unknown.
    pub min_margin: f32,
}

/// The answer to "who is this?".
#[derive(Clone, Debug, PartialEq)]
pub enum Identity {
    Known {
        person_id: String,
        person_name: String,
        score: f32,
        margin: f32,
    },
    /// Nobody matched; `best_score` is the closest similarity seen, if any.
    Unknown {
        best_score: Option<f32>,
    },
}

impl MatchPolicy {
    pub fn decide(&self, candidates: Option<&Candidates>) -> Identity {
        match candidates {
            Some(found)
                if found.best.score >= self.threshold && found.margin() >= self.min_margin =>
            {
                Identity::Known {
                    person_id: found.best.person_id.clone(),
                    person_name: found.best.person_name.clone(),
                    score: found.best.score,
                    margin: found.margin(),
                }
            }
            other => Identity::Unknown { best_score: other.map(|found| found.best.score) },
        }
    }
}

/// Errors of the gallery's own bookkeeping.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GalleryError {
    #[error("embedding has {got} dimensions, the gallery holds {expected}")]
    WrongDimension { expected: usize, got: usize },
}

/// All enrolled embeddings; safe to search and change from many threads.
#[derive(Debug)]
pub struct Gallery {
    dim: usize,
    inner: RwLock<Rows>,
}

#[derive(Debug, Default)]
struct Rows {
    /// `len * dim` floats, row after row.
    values: Vec<f32>,
    /// For each row, the index of its owner in `people`.
    owners: Vec<usize>,
    face_ids: Vec<String>,
    people: Vec<PersonSlot>,
    person_index: HashMap<String, usize>,
}

#[derive(Debug)]
struct PersonSlot {
    id: String,
    name: String,
    rows: usize,
}

impl Gallery {
    pub fn new(dim: usize) -> Self {
        Self { dim, inner: RwLock::new(Rows::default()) }
    }

    /// Number of embeddings (rows) held.
    pub fn len(&self) -> usize {
        self.read().owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of people with at least one row.
    pub fn people(&self) -> usize {
        self.read().people.iter().filter(|slot| slot.rows > 0).count()
    }

    /// Adds rows; all or none (a row of the wrong size rejects the batch).
    pub fn insert(&self, rows: impl IntoIterator<Item = GalleryRow>) -> Result<(), GalleryError> {
        let rows: Vec<GalleryRow> = rows.into_iter().collect();
        if let Some(bad) = rows.iter().find(|row| row.embedding.len() != self.dim) {
            return Err(GalleryError::WrongDimension {
                expected: self.dim,
                got: bad.embedding.len(),
            });
        }

        let mut inner = self.write();
        inner.values.reserve(rows.len() * self.dim);
        for row in rows {
            let owner = inner.slot_for(&row.person_id, &row.person_name);
            inner.people[owner].rows += 1;
            inner.values.extend_from_slice(&row.embedding);
            inner.owners.push(owner);
            inner.face_ids.push(row.face_id);
        }
        Ok(())
    }

    /// Removes every row of a person; returns how many were removed.
    pub fn remove_person(&self, person_id: &str) -> usize {
        let mut inner = self.write();
        let Some(&owner) = inner.person_index.get(person_id) else {
            return 0;
        };
        let removed = inner.people[owner].rows;
        inner.retain_rows(self.dim, |row_owner, _| row_owner != owner);
        inner.people[owner].rows = 0;
        removed
    }

    /// Changes the name reported for a person.
    pub fn rename(&self, person_id: &str, name: &str) {
        let mut inner = self.write();
        if let Some(&owner) = inner.person_index.get(person_id) {
            inner.people[owner].name = name.to_owned();
        }
    }

    /// Scores every person against `query` (L2-normalised, `dim` long).
    pub fn search(&self, query: &[f32]) -> Result<Option<Candidates>, GalleryError> {
        if query.len() != self.dim {
            return Err(GalleryError::WrongDimension { expected: self.dim, got: query.len() });
        }

        let inner = self.read();
        let mut best_per_person = vec![f32::NEG_INFINITY; inner.people.len()];
        for (row, &owner) in inner.values.chunks_exact(self.dim).zip(&inner.owners) {
            let score = dot(row, query);
            if score > best_per_person[owner] {
                best_per_person[owner] = score;
            }
        }

        let mut ranked: Vec<(usize, f32)> = best_per_person
            .into_iter()
            .enumerate()
            .filter(|(_, score)| score.is_finite())
            .collect();
        let top = ranked.len().min(2);
        if top == 0 {
            return Ok(None);
        }
        ranked.select_nth_unstable_by(top - 1, |a, b| b.1.total_cmp(&a.1));
        ranked.truncate(top);
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let candidate = |(owner, score): (usize, f32)| Candidate {
            person_id: inner.people[owner].id.clone(),
            person_name: inner.people[owner].name.clone(),
            score,
        };
        let mut ranked = ranked.into_iter();
        Ok(ranked
            .next()
            .map(|best| Candidates { best: candidate(best), second: ranked.next().map(candidate) }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        // A panic while holding the lock cannot leave rows half-written: every
        // change is applied after its checks, so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Rows> {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Rows {
    fn slot_for(&mut self, person_id: &str, name: &str) -> usize {
        if let Some(&owner) = self.person_index.get(person_id) {
            self.people[owner].name = name.to_owned();
            return owner;
        }
        self.people.push(PersonSlot { id: person_id.to_owned(), name: name.to_owned(), rows: 0 });
        self.person_index.insert(person_id.to_owned(), self.people.len() - 1);
        self.people.len() - 1
    }

    /// Keeps the rows for which `keep(owner, face_id)` holds, in order.
    fn retain_rows(&mut self, dim: usize, keep: impl Fn(usize, &str) -> bool) {
        let mut kept = 0;
        for row in 0..self.owners.len() {
            if keep(self.owners[row], &self.face_ids[row]) {
                if kept != row {
                    self.values.copy_within(row * dim..(row + 1) * dim, kept * dim);
                    self.owners[kept] = self.owners[row];
                    self.face_ids.swap(kept, row);
                }
                kept += 1;
            }
        }
        self.values.truncate(kept * dim);
        self.owners.truncate(kept);
        self.face_ids.truncate(kept);
    }
}

/// Dot product with eight independent accumulators, which the compiler turns
/// into SIMD lanes (a single running sum would serialise on its additions).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_chunks, a_rest) = a.as_chunks::<8>();
    let (b_chunks, b_rest) = b.as_chunks::<8>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(values: &[f32]) -> Vec<f32> {
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        values.iter().map(|v| v / norm).collect()
    }

    fn row(person: &str, face: &str, values: &[f32]) -> GalleryRow {
        GalleryRow {
            person_id: person.to_owned(),
            person_name: format!("Name of {person}"),
            face_id: face.to_owned(),
            embedding: unit(values),
        }
    }

    fn sample() -> Gallery {
        let gallery = Gallery::new(3);
        gallery
            .insert([
                row("ann", "f1", &[1.0, 0.0, 0.0]),
                row("ann", "f2", &[0.9, 0.1, 0.0]),
                row("bob", "f3", &[0.0, 1.0, 0.0]),
                row("cy", "f4", &[0.0, 0.0, 1.0]),
            ])
            .unwrap();
        gallery
    }

    #[test]
    fn best_person_is_scored_by_their_best_row() {
        let found = sample().search(&unit(&[0.9, 0.1, 0.0])).unwrap().unwrap();
        assert_eq!(found.best.person_id, "ann");
        assert!((found.best.score - 1.0).abs() < 1e-6);
        assert_eq!(found.second.as_ref().unwrap().person_id, "bob");
    }

    #[test]
    fn empty_gallery_finds_nobody() {
        assert_eq!(Gallery::new(3).search(&[1.0, 0.0, 0.0]).unwrap(), None);
    }

    #[test]
    fn wrong_dimension_is_rejected_without_change() {
        let gallery = sample();
        let bad = GalleryRow { embedding: vec![1.0; 4], ..row("dee", "f9", &[1.0, 0.0, 0.0]) };
        assert_eq!(
            gallery.insert([row("dee", "f8", &[1.0, 1.0, 0.0]), bad]),
            Err(GalleryError::WrongDimension { expected: 3, got: 4 })
        );
        assert_eq!(gallery.len(), 4);
        assert!(gallery.search(&[1.0, 0.0]).is_err());
    }

    #[test]
    fn removing_a_person_drops_all_their_rows_only() {
        let gallery = sample();
        assert_eq!(gallery.remove_person("ann"), 2);
        assert_eq!(gallery.len(), 2);
        assert_eq!(gallery.people(), 2);
        let found = gallery.search(&unit(&[1.0, 0.0, 0.1])).unwrap().unwrap();
        assert_eq!(found.best.person_id, "cy");
        assert_eq!(gallery.remove_person("nobody"), 0);
    }

    #[test]
    fn policy_needs_threshold_and_margin() {
        let policy = MatchPolicy { threshold: 0.5, min_margin: 0.1 };
        let found = sample().search(&unit(&[1.0, 0.0, 0.0])).unwrap();
        assert!(
            matches!(policy.decide(found.as_ref()), Identity::Known { ref person_id, .. } if person_id == "ann")
        );

        // Equally close to bob and cy: above threshold, but no margin.
        let torn = sample().search(&unit(&[0.0, 1.0, 1.0])).unwrap();
        assert!(matches!(policy.decide(torn.as_ref()), Identity::Unknown { best_score: Some(_) }));

        let strict = MatchPolicy { threshold: 1.01, min_margin: 0.0 };
        assert!(matches!(strict.decide(found.as_ref()), Identity::Unknown { .. }));
        assert_eq!(policy.decide(None), Identity::Unknown { best_score: None });
    }

    #[test]
    fn rename_changes_the_reported_name() {
        let gallery = sample();
        gallery.rename("bob", "Robert");
        let found = gallery.search(&unit(&[0.0, 1.0, 0.0])).unwrap().unwrap();
        assert_eq!(found.best.person_name, "Robert");
    }

    #[test]
    fn dot_matches_naive_sum_for_odd_lengths() {
        let a: Vec<f32> = (0..131).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..131).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }
}
