//! `facegate bench-gallery`: how fast the gallery searches 10k, 100k and 1M
//! rows, and how fast a store of 10k people loads into it at start-up, each
//! next to a reference measured in the same run (a plain iterator dot
//! product; a bare read of the embeddings from SQLite).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gallery::{Gallery, GalleryRow, dot};
use crate::store::sqlite::SqliteStore;
use crate::store::{NewFace, Store};

const DIM: usize = 128;

#[derive(clap::Args, Debug)]
pub struct GalleryBenchArgs {
    /// Gallery sizes to search, in rows.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub rows: Vec<usize>,
    /// People in the start-up measurement (one face each).
    #[arg(long, default_value_t = 10_000)]
    pub people: usize,
    /// Searches timed per size.
    #[arg(long, default_value_t = 50)]
    pub queries: usize,
}

/// A deterministic pseudo-random unit vector (xorshift), so runs compare.
fn unit_vector(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut values: Vec<f32> = (0..DIM)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    values.iter_mut().for_each(|v| *v /= norm);
    values
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
pub async fn run(args: GalleryBenchArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:>9}  {:>14}  {:>22}", "rows", "search median", "reference (naive loop)")?;
    for &rows in &args.rows {
        let gallery = Gallery::new(DIM);
        // 4 faces per person, as an enrolled gallery would have.
        gallery.insert((0..rows).map(|row| GalleryRow {
            person_id: format!("p{}", row / 4),
            person_name: format!("person {}", row / 4),
            face_id: format!("f{row}"),
            embedding: unit_vector(row as u64),
        }))?;
        let flat: Vec<f32> = (0..rows).flat_map(|row| unit_vector(row as u64)).collect();
        let mut searched = Vec::new();
        let mut naive = Vec::new();
        for query in 0..args.queries {
            let query = unit_vector(u64::MAX - query as u64);
            let started = Instant::now();
            std::hint::black_box(gallery.search(&query)?);
            searched.push(started.elapsed());
            let started = Instant::now();
            let best = flat
                .chunks_exact(DIM)
                .map(|row| row.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::NEG_INFINITY, f32::max);
            std::hint::black_box(best);
            naive.push(started.elapsed());
        }
        writeln!(
            out,
            "{rows:>9}  {:>11.2} ms  {:>19.2} ms",
            median(searched).as_secs_f64() * 1e3,
            median(naive).as_secs_f64() * 1e3
        )?;
        // Keep the check honest: the SIMD-friendly dot agrees with the naive one.
        let probe = unit_vector(7);
        anyhow::ensure!(
            (dot(&flat[..DIM], &probe)
                - flat[..DIM].iter().zip(&probe).map(|(a, b)| a * b).sum::<f32>())
            .abs()
                < 1e-4
        );
    }

    let temp = tempfile::tempdir()?;
    let dir = temp.path().to_owned();
    let store = SqliteStore::open(&dir)?;
    let started = Instant::now();
    for person in 0..args.people {
        let face = NewFace {
            photo_jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            upload_sha256: format!("{person:064x}"),
            width: 1,
            height: 1,
            embedding: unit_vector(person as u64),
            model: crate::vision::EMBEDDING_MODEL_ID.to_owned(),
            detector: "mtcnn".to_owned(),
            face_box: [0.0, 0.0, 1.0, 1.0],
        };
        store.create_person(&format!("person {person}"), vec![face]).await?;
    }
    let filled = started.elapsed();
    drop(store);

    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir)?);
    let faces = store.all_faces().await?;
    let gallery = Gallery::new(DIM);
    gallery.insert(faces.into_iter().map(|face| GalleryRow {
        person_id: face.person_id,
        person_name: face.person_name,
        face_id: face.face_id,
        embedding: face.embedding,
    }))?;
    let ready = started.elapsed();

    let started = Instant::now();
    let db = rusqlite::Connection::open(dir.join("facegate.sqlite3"))?;
    let mut statement = db.prepare("SELECT embedding FROM faces")?;
    let blobs: Vec<Vec<u8>> =
        statement.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    let bare = started.elapsed();
    writeln!(
        out,
        "start-up with {} people: store open + gallery load {:.0} ms (reference: bare SELECT of {} embeddings {:.0} ms); filling the store took {:.1} s",
        args.people,
        ready.as_secs_f64() * 1e3,
        blobs.len(),
        bare.as_secs_f64() * 1e3,
        filled.as_secs_f64()
    )?;
    Ok(())
}
