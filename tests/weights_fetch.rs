//! `neural-style weights`: fetching a model from a local HTTP server on 127.0.0.1 into an empty
//! cache and using it without `--weights`; every failed download (corrupt archive, wrong checksum,
//! HTTP error, truncated transfer, stalled server) is one line of error with nothing left in the
//! cache; `import`, `path` and `list` work offline.
//!
//! The server is a thread of this test answering one connection with a hand-written HTTP/1.1
//! response; it stops by itself after that connection or after a deadline.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// The client's network timeout in these tests (`NEURAL_STYLE_FETCH_TIMEOUT`), in seconds.
const CLIENT_TIMEOUT_S: &str = "2";

fn int8_model() -> PathBuf {
    shared().join("weights/mobilenet_v3_small_100_224_int8.tflite")
}

/// A fresh, empty cache directory (inside a temp dir that lives as long as the returned guard).
fn empty_cache() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    (dir, cache)
}

/// Runs the tool with `cache` as its cache directory and no `NEURAL_STYLE_WEIGHTS`.
fn neural_style(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(args)
        .env("NEURAL_STYLE_CACHE_DIR", cache)
        .env("NEURAL_STYLE_FETCH_TIMEOUT", CLIENT_TIMEOUT_S)
        .env_remove("NEURAL_STYLE_WEIGHTS")
        .output()
        .expect("run neural-style")
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nothing at all in the cache directory: no model, no pointer, no temporary file.
fn assert_nothing_installed(cache: &Path) {
    let entries: Vec<_> = match std::fs::read_dir(cache) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", cache.display()),
    };
    assert!(entries.is_empty(), "the cache holds {entries:?}");
}

#[cfg(not(feature = "fetch"))]
#[test]
fn fetch_without_the_downloader_says_so() {
    let (_dir, cache) = empty_cache();
    let out = neural_style(&cache, &["weights", "fetch"]);
    assert_one_line_error(&out, "built without the downloader");
    assert_nothing_installed(&cache);
}

#[test]
fn without_weights_every_command_says_to_fetch_them() {
    let (_dir, cache) = empty_cache();
    let out = neural_style(&cache, &["weights", "path"]);
    assert_one_line_error(&out, "run `neural-style weights fetch`");
    let image = shared().join("images/grace_hopper.jpg");
    let out = neural_style(&cache, &["classify", image.to_str().unwrap()]);
    assert_one_line_error(&out, "run `neural-style weights fetch`");
    assert_nothing_installed(&cache);
}

#[test]
fn import_installs_a_local_model_as_the_default_and_list_shows_it() {
    let (dir, cache) = empty_cache();
    let uint8 = uint8_weights();
    let wrong = "f".repeat(64);
    let out = neural_style(&cache, &["weights", "import", uint8.to_str().unwrap(), "--sha256", &wrong]);
    assert_one_line_error(&out, "checksum mismatch");
    assert_nothing_installed(&cache);

    // The uint8 release is a known download with a known checksum, so list reports it installed.
    assert_success(&neural_style(&cache, &["weights", "import", uint8.to_str().unwrap()]));
    let out = neural_style(&cache, &["weights", "path"]);
    assert_success(&out);
    let installed = cache.join("v3-small_224_1.0_uint8.tflite");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), installed.to_str().unwrap());
    let out = neural_style(&cache, &["weights", "list"]);
    assert_success(&out);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&format!("installed: {}", installed.display())), "{listing}");
    assert!(listing.contains("small-float") && listing.contains("not installed"), "{listing}");

    // A labels file is checked by counting its labels.
    let out = neural_style(&cache, &["weights", "import", int8_model().to_str().unwrap()]);
    assert_success(&out);
    let not_labels = dir.path().join("labels.txt");
    std::fs::write(&not_labels, "cat\ndog\n").unwrap();
    let out = neural_style(&cache, &["weights", "import", not_labels.to_str().unwrap()]);
    assert_one_line_error(&out, "has 2 labels");
    assert!(!cache.join("imagenet_labels.txt").exists());
    let out = neural_style(&cache, &["weights", "path"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        cache.join(int8_model().file_name().unwrap()).to_str().unwrap()
    );
}

#[test]
fn explicit_weights_come_before_the_environment_and_the_installed_default() {
    let (_dir, cache) = empty_cache();
    assert_success(&neural_style(&cache, &["weights", "import", uint8_weights().to_str().unwrap()]));
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["weights", "path"])
        .env("NEURAL_STYLE_CACHE_DIR", &cache)
        .env("NEURAL_STYLE_WEIGHTS", int8_model())
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), int8_model().to_str().unwrap());
    // `layers` reads the architecture from the weights it resolves: --weights wins over both.
    let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
        .args(["layers", "--json", "--weights", uint8_weights().to_str().unwrap()])
        .env("NEURAL_STYLE_CACHE_DIR", &cache)
        .env("NEURAL_STYLE_WEIGHTS", "/nonexistent/weights.tflite")
        .output()
        .unwrap();
    assert_success(&out);
}

#[test]
fn readme_shows_the_current_help_of_weights() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for sub in [None, Some("list"), Some("fetch"), Some("import"), Some("path")] {
        let args: Vec<&str> = ["weights"].into_iter().chain(sub).chain(["-h"]).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_neural-style")).args(&args).output().unwrap();
        assert_success(&out);
        let help = String::from_utf8(out.stdout).unwrap();
        let shown = format!("$ neural-style {}\n{}", args.join(" "), help.trim_end());
        assert!(readme.contains(&shown), "README.md lacks the current output of `neural-style {}`", args.join(" "));
    }
}

/// Downloads from a server on 127.0.0.1 (the `fetch` feature).
#[cfg(feature = "fetch")]
mod fetch {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;

    /// What the test server does with the one request it gets.
    #[derive(Clone)]
    enum Reply {
        /// 200 with this body.
        Body(Vec<u8>),
        /// An HTTP error status with a short body.
        Status(u16),
        /// 200 announcing `announced` bytes, sending `body`, then closing the connection.
        CutOff { body: Vec<u8>, announced: usize },
        /// 200 announcing `announced` bytes, sending `body`, then sending nothing more for a while.
        StallAfter { body: Vec<u8>, announced: usize },
        /// 200 announcing `announced` bytes, then one byte every 100 ms (never stalling).
        Trickle { announced: usize },
    }

    /// How long the server waits for a client, and how long a stalled reply holds its connection.
    const SERVER_DEADLINE: Duration = Duration::from_secs(60);

    /// Starts a server for one request on 127.0.0.1; returns its base URL.
    fn serve(reply: Reply) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < SERVER_DEADLINE {
                match listener.accept() {
                    Ok((stream, _)) => {
                        answer(stream, &reply);
                        return;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    fn answer(mut stream: TcpStream, reply: &Reply) {
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Read the request head (a GET has no body).
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
            request.push(byte[0]);
        }
        let head = |status: &str, length: usize| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            )
        };
        // Write errors are ignored: the client may give up first, which is what some tests check.
        let _ = match reply {
            Reply::Body(body) => stream.write_all(head("200 OK", body.len()).as_bytes()).and(stream.write_all(body)),
            Reply::Status(code) => stream.write_all((head(&format!("{code} Nope"), 4) + "nope").as_bytes()),
            Reply::CutOff { body, announced } => {
                stream.write_all(head("200 OK", *announced).as_bytes()).and(stream.write_all(body))
            }
            Reply::StallAfter { body, announced } => {
                let sent = stream.write_all(head("200 OK", *announced).as_bytes()).and(stream.write_all(body));
                let _ = stream.flush();
                // Hold the connection open without sending, until the client hangs up or the deadline.
                let start = Instant::now();
                stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                while start.elapsed() < SERVER_DEADLINE {
                    match stream.read(&mut byte) {
                        Ok(0) => break,
                        _ => continue,
                    }
                }
                sent
            }
            Reply::Trickle { announced } => {
                let mut sent = stream.write_all(head("200 OK", *announced).as_bytes());
                for _ in 0..*announced {
                    sent = sent.and(stream.write_all(b"x")).and(stream.flush());
                    if sent.is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                sent
            }
        };
        let _ = stream.flush();
    }

    /// A `.tgz` laid out like Google's releases (a folder holding the model and other files).
    fn tgz_of(model: &Path) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let name = model.file_name().unwrap().to_str().unwrap();
        builder.append_path_with_name(model, format!("release/{name}")).unwrap();
        let readme = b"not a model";
        let mut header = tar::Header::new_gnu();
        header.set_size(readme.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "release/README", &readme[..]).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn fetched_model_and_labels_are_used_by_classify_without_weights() {
        let (_dir, cache) = empty_cache();
        let url = serve(Reply::Body(tgz_of(&int8_model())));
        let out = neural_style(&cache, &["weights", "fetch", "--url", &format!("{url}/x.tgz")]);
        assert_success(&out);
        let installed = cache.join("mobilenet_v3_small_100_224_int8.tflite");
        assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(int8_model()).unwrap());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("56b0056cc4255700f9a6445ef350439ca719288bd5b6d01d6f459c7c70aaa4b2"), "{stdout}");

        let out = neural_style(&cache, &["weights", "path"]);
        assert_success(&out);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), installed.to_str().unwrap());

        let labels = std::fs::read(shared().join("weights/imagenet_labels_1001.txt")).unwrap();
        let url = serve(Reply::Body(labels));
        assert_success(&neural_style(&cache, &["weights", "fetch", "labels", "--url", &format!("{url}/labels.txt")]));

        if gpu().is_none() {
            return;
        }
        let image = shared().join("images/grace_hopper.jpg");
        let out = neural_style(&cache, &["classify", "--json", "--top", "1", image.to_str().unwrap()]);
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["top"][0]["index"], 653);
        assert_eq!(v["top"][0]["label"], "military uniform");
    }

    #[test]
    fn corrupt_archive_installs_nothing() {
        let (_dir, cache) = empty_cache();
        let mut archive = tgz_of(&int8_model());
        let middle = archive.len() / 2;
        archive[middle..middle + 64].fill(0);
        let url = serve(Reply::Body(archive));
        let out = neural_style(&cache, &["weights", "fetch", "--url", &format!("{url}/x.tgz")]);
        assert_one_line_error(&out, "corrupt archive x.tgz");
        assert_nothing_installed(&cache);
    }

    #[test]
    fn a_file_that_is_not_a_model_installs_nothing() {
        let (_dir, cache) = empty_cache();
        let url = serve(Reply::Body(b"<html>not a model</html>".to_vec()));
        let out = neural_style(&cache, &["weights", "fetch", "--url", &format!("{url}/model.tflite")]);
        assert_one_line_error(&out, "model.tflite is not a usable model");
        assert_nothing_installed(&cache);
    }

    #[test]
    fn wrong_checksum_installs_nothing() {
        let (_dir, cache) = empty_cache();
        let url = serve(Reply::Body(tgz_of(&int8_model())));
        let wrong = "0".repeat(64);
        let out = neural_style(&cache, &["weights", "fetch", "--url", &format!("{url}/x.tgz"), "--sha256", &wrong]);
        assert_one_line_error(&out, "checksum mismatch");
        assert_nothing_installed(&cache);
    }

    #[test]
    fn http_error_status_installs_nothing() {
        let (_dir, cache) = empty_cache();
        let url = serve(Reply::Status(404));
        let out = neural_style(&cache, &["weights", "fetch", "--url", &format!("{url}/x.tgz")]);
        assert_one_line_error(&out, "HTTP 404");
        assert_nothing_installed(&cache);
    }

    #[test]
    fn truncated_transfer_installs_nothing() {
        let (_dir, cache) = empty_cache();
        let body = tgz_of(&int8_model());
        let announced = body.len() + 100_000;
        let url = serve(Reply::CutOff { body, announced });
        let out = neural_style(&cache, &["weights", "fetch", "--url", &format!("{url}/x.tgz")]);
        assert_one_line_error(&out, "cut off");
        assert_nothing_installed(&cache);
    }

    #[test]
    fn stalled_server_times_out_and_installs_nothing() {
        let (_dir, cache) = empty_cache();
        let body = tgz_of(&int8_model());
        let announced = body.len();
        let url = serve(Reply::StallAfter { body: body[..announced / 2].to_vec(), announced });
        let out = neural_style(&cache, &["weights", "fetch", "--url", &format!("{url}/x.tgz")]);
        assert_one_line_error(&out, "stalled: no data for 2.0 s");
        assert_nothing_installed(&cache);
    }

    #[test]
    fn a_server_that_trickles_forever_meets_the_overall_deadline() {
        let (_dir, cache) = empty_cache();
        let url = serve(Reply::Trickle { announced: 1 << 20 });
        let out = Command::new(env!("CARGO_BIN_EXE_neural-style"))
            .args(["weights", "fetch", "--url", &format!("{url}/x.tflite")])
            .env("NEURAL_STYLE_CACHE_DIR", &cache)
            .env("NEURAL_STYLE_FETCH_TIMEOUT", "0.25")
            .output()
            .unwrap();
        assert_one_line_error(&out, "took longer than 5.0 s");
        assert_nothing_installed(&cache);
    }

    #[test]
    fn plain_http_to_another_host_is_refused() {
        let (_dir, cache) = empty_cache();
        let out = neural_style(&cache, &["weights", "fetch", "--url", "http://example.invalid/x.tgz"]);
        assert_one_line_error(&out, "must start with https://");
        assert_nothing_installed(&cache);
    }
}

#[test]
fn a_model_named_with_leading_and_trailing_spaces_is_the_default_after_import() {
    let (dir, cache) = empty_cache();
    let spaced = dir.path().join(" lead .tflite");
    std::fs::copy(int8_model(), &spaced).unwrap();
    assert_success(&neural_style(&cache, &["weights", "import", spaced.to_str().unwrap()]));
    let out = neural_style(&cache, &["weights", "path"]);
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
        cache.join(" lead .tflite").to_str().unwrap()
    );
}
