//! Hostile files where the plugin reads one: a credentials file, a CA bundle, a spec. Nothing
//! of their contents is ever echoed, and anything that is not a regular file is refused
//! quickly (exit 2) instead of being read forever.

mod common;

use common::*;

#[test]
fn a_malformed_credentials_file_never_echoes_its_text() {
    let sim = sim();
    let dir = tempdir();
    let url = sim.url();
    for (i, text) in [
        format!("HW_ACCESS_KEY={AK}\nHW_SECRET_KEY {SK}=x\n"),
        format!("HW_ACCESS_KEY={AK}\n{SK}=x\n"),
        format!("HW_ACCESS_KEY={AK}\nhw_secret_key {SK}\n"),
        format!("HW_SECRET_KEY {SK}=x\n"),
        format!("{AK}\n{SK}\n{SK}\n"),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("aksk-{i}"));
        std::fs::write(&path, text).unwrap();
        let out = bin()
            .args([
                "query",
                "--endpoint",
                &url,
                "--iam-endpoint",
                &url,
                "--credentials-file",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("credentials file {}:", path.display())),
            "names the file and line: {}",
            stderr(&out)
        );
        assert_no_secret(&out);
    }
    assert!(sim.requests().is_empty());
}
