//! Replays the committed cargo fuzz corpus (`fuzz/corpus/<target>/`) through
//! the fuzz targets' own functions, on the stable toolchain and without
//! sanitizers: an input that once crashed a parser, kept in the corpus, keeps
//! it fixed.

use std::path::Path;

#[path = "../../../fuzz/src/lib.rs"]
mod targets;

#[test]
fn every_corpus_input_runs_without_a_panic() {
    let corpus = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus"));
    for (name, target) in targets::TARGETS {
        let dir = corpus.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
            inputs += 1;
        }
        assert!(
            inputs >= 20,
            "{name}: only {inputs} inputs in {}",
            dir.display()
        );
    }
}
