//! The crate's one boundary: only the glue (`src/glue/`) touches the runtime crates
//! (`worker`, `web_sys`, `js_sys`, `wasm_bindgen`). Everything else is plain Rust,
//! tested natively; the flows reach the runtime only through `platform::Platform`.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_glue_touches_the_runtime() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 20, "found the sources ({})", files.len());
    let runtime = [
        "worker::",
        "web_sys::",
        "js_sys::",
        "wasm_bindgen::",
        "#[wasm_bindgen",
        "use worker",
    ];
    let mut offenders = Vec::new();
    for file in &files {
        if file.starts_with(root.join("glue")) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a readable source");
        for needle in runtime {
            if text.contains(needle) {
                offenders.push(format!("{} uses {needle}", file.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
