//! `kiln render --device cuda:0,cuda:0` (a shard process per device, merged) and `kiln serve
//! --device cuda` on the same request give the same image, bit for bit (the same kernels on the
//! same device). In CI the CUDA device is the software GPU; without a GPU this skips, unless
//! `KILN_REQUIRE_GPU=1`.
#![cfg(feature = "cuda")]

mod common;

use common::*;

#[test]
fn serving_and_a_several_device_run_render_alike_on_cuda() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [request("c0", 61, ""), request("c1", 62, "")];
    let requests = write_requests(dir.path(), &lines);
    // One shard process per device (here the same device twice): each a plain `kiln render
    // --device cuda:0 --shard I/2`, merged.
    let multi = dir.path().join("multi");
    let output = render(&requests, &multi, &["--device", "cuda:0,cuda:0", "--dtype", "bf16"]);
    let err = stderr(&output);
    if output.status.code() == Some(2) && err.contains("is unavailable") {
        kiln_runtime::cuda::skip_gpu_test("kiln render --device cuda:0,cuda:0", &err);
        return;
    }
    assert_eq!(output.status.code(), Some(0), "{err}");
    let want = records(&multi);
    assert_eq!(want.len(), 2, "both lines merged");
    assert!(multi.join("shard-0-of-2").is_dir() && multi.join("shard-1-of-2").is_dir());

    // The server on the device: the same image for the same request.
    let (mut child, addr, _lines) = serve(&["--device", "cuda", "--dtype", "bf16"]);
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut response = agent
        .post(&format!("http://{addr}/generate/sdxl"))
        .header("Content-Type", "application/json")
        .send(lines[0].as_str())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&response.body_mut().with_config().limit(64 << 20).read_to_string().unwrap())
            .unwrap();
    assert_eq!(body["images"], want["c0"]["images"], "the served image differs");
    child.kill().unwrap();
    let _ = child.wait();
}
