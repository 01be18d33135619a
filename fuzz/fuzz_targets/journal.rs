//! The action journal (JSON lines): any bytes read as entries plus the lines skipped, never a
//! panic; every entry read prints to a line that reads back as the same entry.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use keywarden::state::journal::{to_line, FileJournal};
    let dir = std::env::temp_dir().join(format!("kw-fuzz-journal-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("actions.jsonl");
    std::fs::write(&path, data).unwrap();
    let journal = FileJournal::new(&path, chrono::TimeDelta::days(400));
    if let Ok(read) = journal.read_now() {
        let again = dir.join("again.jsonl");
        let text: String = read.entries.iter().map(|e| to_line(e) + "\n").collect();
        std::fs::write(&again, text).unwrap();
        let back = FileJournal::new(&again, chrono::TimeDelta::days(400))
            .read_now()
            .unwrap();
        assert_eq!(back.entries, read.entries);
        assert!(back.skipped.is_empty());
    }
});
