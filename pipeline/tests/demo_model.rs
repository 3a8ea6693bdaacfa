//! The built-in demo model: kiln opens it as SDXL base and its four models load and run; it is
//! made byte-identically, reused when intact, rebuilt when damaged, and safe to make from several
//! threads at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ::image::RgbImage;
use kiln_pipeline::demo::{DEMO_DIR_NAME, DEMO_NOTICE, ensure_demo_model};
use kiln_pipeline::generate::{Engine, InitImage, Job};
use kiln_pipeline::models::conditioning::TextConditioner;
use kiln_pipeline::models::unet::{AddedConditioning, UNet};
use kiln_pipeline::models::vae::{Tiling, Vae};
use kiln_pipeline::rng::TorchGenerator;
use kiln_pipeline::samplers::SamplerName;
use kiln_runtime::checkpoint::{Checkpoint, Family, Format};
use kiln_runtime::{DType, Device, Tensor};

const UNET_FILE: &str = "unet/diffusion_pytorch_model.safetensors";
const VAE_FILE: &str = "vae/diffusion_pytorch_model.safetensors";

/// Every file under `dir`, as (path relative to `dir`, bytes), sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                out.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// Names in the cache directory (staging and discarded folders must not be left behind).
fn cache_entries(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(cache).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn mean_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn assert_finite_not_constant(what: &str, t: &Tensor) {
    let values = t.to_vec_f32().unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "{what}: non-finite values");
    let (mean, std) = mean_std(&values);
    assert!(std > 1e-3, "{what}: nearly constant (mean {mean}, std {std})");
}

fn random(g: &mut TorchGenerator, dims: &[usize]) -> Tensor {
    Tensor::from_f32(g.randn_nchw(dims), dims, DType::F32, Device::Cpu).unwrap()
}

#[test]
fn demo_opens_as_sdxl_base_and_its_models_run() {
    let cache = tempfile::tempdir().unwrap();
    let path = ensure_demo_model(cache.path()).unwrap();
    assert_eq!(path, cache.path().join(DEMO_DIR_NAME));
    let ckpt = Checkpoint::open(&path).unwrap();
    assert_eq!(ckpt.family(), Family::SdxlBase);
    assert_eq!(ckpt.format(), Format::Diffusers);

    let text = TextConditioner::load(&ckpt, DType::F32, Device::Cpu).unwrap();
    let unet = UNet::load(&ckpt, DType::F32, Device::Cpu).unwrap();
    let vae = Vae::load(&ckpt, DType::F32, Device::Cpu).unwrap();
    // The demo's topology (tools/make_demo_assets.py): SDXL-shaped, narrow, attention only deep.
    let u = unet.config();
    assert_eq!(u.block_out_channels, [8, 16, 32]);
    assert_eq!((u.norm_num_groups, u.layers_per_block), (4, 1));
    assert_eq!(u.down_block_types, ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"]);
    assert_eq!(u.up_block_types, ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"]);
    assert_eq!((u.addition_embed_type.as_deref(), u.addition_time_embed_dim), (Some("text_time"), Some(8)));
    let v = vae.config();
    assert_eq!(v.block_out_channels, [4, 4, 8, 8]);
    assert_eq!((v.latent_channels, v.scaling_factor, v.force_upcast), (4, 0.13025, true));
    assert!(ckpt.contains("vae.decoder.mid_block.resnets.0.conv1.weight"));
    assert!(!ckpt.contains("vae.decoder.mid_block.attentions.0.to_q.weight"), "the VAE has mid attention");

    let prompt = text.encode("a lighthouse on a cliff at dusk", None, None).unwrap();
    assert_eq!(prompt.hidden.dims(), [1, 77, 48]);
    assert_finite_not_constant("prompt embedding", &prompt.hidden);
    let pooled = prompt.pooled.clone().expect("SDXL has a pooled embedding");
    assert_finite_not_constant("pooled embedding", &pooled);

    let mut g = TorchGenerator::new(7);
    let latents = g.randn_tensor([1, 4, 16, 16], DType::F32, Device::Cpu).unwrap();
    let added =
        AddedConditioning { text_embeds: pooled, time_ids: vec![128.0, 128.0, 0.0, 0.0, 128.0, 128.0] };
    let noise = unet.forward(&latents, &[500.0], &prompt.hidden, Some(&added)).unwrap();
    assert_eq!(noise.dims(), [1, 16, 16, 4]);
    assert_finite_not_constant("UNet output", &noise);
    let (_, std) = mean_std(&noise.to_vec_f32().unwrap());
    assert!(std < 100.0, "UNet output std {std}: the weights are not scaled to keep activations O(1)");

    let image = vae.decode(&random(&mut g, &[1, 8, 8, 4])).unwrap();
    assert_eq!(image.dims(), [1, 64, 64, 3]);
    assert_finite_not_constant("VAE decode", &image);
}

/// A demo job: `seeds` images of 64x64 with guidance, two DDIM steps.
fn job(prompt: &str, seeds: Vec<u32>, init: Option<InitImage>) -> Job {
    Job {
        prompt: prompt.into(),
        prompt_2: None,
        negative_prompt: Some("blurry".into()),
        negative_prompt_2: None,
        clip_skip: None,
        cfg_scale: 7.0,
        steps: 2,
        sampler: SamplerName::DDIM,
        seeds,
        width: 64,
        height: 64,
        init,
        refiner_at: None,
        control: None,
        ip: None,
    }
}

fn assert_image_not_flat(what: &str, image: &RgbImage) {
    assert_eq!(image.dimensions(), (64, 64), "{what}");
    let values: Vec<f32> = image.as_raw().iter().map(|&v| v as f32).collect();
    let (_, std) = mean_std(&values);
    assert!(std > 1.0, "{what}: a flat image (std {std})");
}

#[test]
fn the_engine_renders_with_the_demo_model() {
    let cache = tempfile::tempdir().unwrap();
    let engine = Engine::load(&ensure_demo_model(cache.path()).unwrap(), DType::F32, Device::Cpu).unwrap();
    assert_eq!(engine.family(), Family::SdxlBase);
    let images = engine.render(&[job("a lighthouse at dusk", vec![1, 2], None)], 4, &mut |_, _| {}).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].len(), 2);
    assert_image_not_flat("seed 1", &images[0][0]);
    assert_image_not_flat("seed 2", &images[0][1]);
    assert!(images[0][0] != images[0][1], "two seeds gave the same image");

    let start = RgbImage::from_fn(64, 64, |x, y| ::image::Rgb([(x * 4) as u8, (y * 4) as u8, 160]));
    let init = InitImage { image: start, strength: 0.5, mask: None, full_res: None };
    let images = engine.render(&[job("a sunset", vec![3], Some(init))], 4, &mut |_, _| {}).unwrap();
    assert_image_not_flat("img2img", &images[0][0]);
}

#[test]
fn two_creations_are_byte_identical_and_leave_nothing_else() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files_a = files(&ensure_demo_model(a.path()).unwrap());
    let files_b = files(&ensure_demo_model(b.path()).unwrap());
    assert!(files_a.len() >= 11, "{} files", files_a.len());
    assert_eq!(files_a.len(), files_b.len());
    for ((name_a, bytes_a), (name_b, bytes_b)) in files_a.iter().zip(&files_b) {
        assert_eq!(name_a, name_b);
        assert!(bytes_a == bytes_b, "{} differs between two creations", name_a.display());
    }
    assert_eq!(cache_entries(a.path()), [DEMO_DIR_NAME]);
}

/// FNV-1a, 64 bits (the hash `tools/make_demo_assets.py` records).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// (name, shape, dtype) of every tensor, sorted by name.
type Listing = Vec<(String, Vec<usize>, String)>;

fn listing(bytes: &[u8]) -> Listing {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut v: Listing =
        st.tensors().into_iter().map(|(n, t)| (n, t.shape().to_vec(), format!("{:?}", t.dtype()))).collect();
    v.sort();
    v
}

#[test]
fn the_weights_are_torchs_draws_for_the_diffusers_models_tensors() {
    let reference: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/demo/weights.json")).unwrap(),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = ensure_demo_model(cache.path()).unwrap();
    let files = reference.as_object().unwrap();
    assert_eq!(files.len(), 4);
    for (file, expected) in files {
        let bytes = fs::read(path.join(file)).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let data = &bytes[8 + header_len..];
        // The tensors diffusers saves for the models built from the demo's configs, all F16.
        let mut saved: Listing = expected["tensors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, s)| {
                let shape = s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (n.clone(), shape, "F16".to_string())
            })
            .collect();
        saved.sort();
        assert!(saved.len() > 10, "{file}: {} tensors in the fixture", saved.len());
        assert!(listing(&bytes) == saved, "{file}: tensors differ from the diffusers models'");
        assert_eq!(data.len() as u64, expected["data_bytes"].as_u64().unwrap(), "{file}");
        assert_eq!(
            format!("{:016x}", fnv1a64(data)),
            expected["data_fnv1a64"].as_str().unwrap(),
            "{file}: data differ from torch's"
        );
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap();
    (meta.ino(), meta.modified().unwrap())
}

#[cfg(not(unix))]
fn identity(path: &Path) -> (u64, std::time::SystemTime) {
    (0, fs::metadata(path).unwrap().modified().unwrap())
}

#[test]
fn an_intact_model_is_reused_not_rewritten() {
    let cache = tempfile::tempdir().unwrap();
    let path = ensure_demo_model(cache.path()).unwrap();
    let before: Vec<_> =
        [UNET_FILE, VAE_FILE, "kiln-demo.json"].iter().map(|f| identity(&path.join(f))).collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(ensure_demo_model(cache.path()).unwrap(), path);
    let after: Vec<_> =
        [UNET_FILE, VAE_FILE, "kiln-demo.json"].iter().map(|f| identity(&path.join(f))).collect();
    assert_eq!(before, after, "the demo files were rewritten");
    assert_eq!(cache_entries(cache.path()), [DEMO_DIR_NAME]);
}

/// Damages the cached model with `damage`, then checks the next call rebuilds it exactly.
fn rebuilt_after(damage: impl Fn(&Path)) {
    let cache = tempfile::tempdir().unwrap();
    let path = ensure_demo_model(cache.path()).unwrap();
    let pristine = files(&path);
    damage(&path);
    assert!(files(&path) != pristine, "the damage changed nothing");
    assert_eq!(ensure_demo_model(cache.path()).unwrap(), path);
    assert!(files(&path) == pristine, "the damaged model was not rebuilt to the same bytes");
    assert_eq!(cache_entries(cache.path()), [DEMO_DIR_NAME]);
}

#[test]
fn a_truncated_weight_file_is_rebuilt() {
    rebuilt_after(|dir| {
        let file = fs::OpenOptions::new().write(true).open(dir.join(UNET_FILE)).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len / 2).unwrap();
    });
}

#[test]
fn a_corrupted_byte_of_the_same_size_is_rebuilt() {
    rebuilt_after(|dir| {
        let path = dir.join(VAE_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let i = bytes.len() - 1000;
        bytes[i] ^= 0x40;
        fs::write(&path, bytes).unwrap();
    });
}

#[test]
fn a_missing_file_or_stamp_is_rebuilt() {
    rebuilt_after(|dir| fs::remove_file(dir.join("text_encoder_2/model.safetensors")).unwrap());
    rebuilt_after(|dir| fs::remove_file(dir.join("kiln-demo.json")).unwrap());
    rebuilt_after(|dir| fs::write(dir.join("unet/config.json"), b"{}").unwrap());
}

#[test]
fn a_file_in_place_of_the_folder_is_replaced() {
    let cache = tempfile::tempdir().unwrap();
    fs::write(cache.path().join(DEMO_DIR_NAME), b"not a model").unwrap();
    let path = ensure_demo_model(cache.path()).unwrap();
    assert!(path.is_dir());
    assert_eq!(cache_entries(cache.path()), [DEMO_DIR_NAME]);
}

#[test]
fn concurrent_creations_all_get_an_intact_model() {
    let cache = tempfile::tempdir().unwrap();
    let reference = tempfile::tempdir().unwrap();
    let expected = files(&ensure_demo_model(reference.path()).unwrap());
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| ensure_demo_model(cache.path()).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.iter().all(|p| *p == cache.path().join(DEMO_DIR_NAME)));
    assert!(files(&paths[0]) == expected, "the model made concurrently differs");
    assert_eq!(cache_entries(cache.path()), [DEMO_DIR_NAME]);
}

#[test]
fn a_cache_path_that_is_a_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    fs::write(&not_a_dir, b"x").unwrap();
    let err = ensure_demo_model(&not_a_dir).unwrap_err();
    assert!(err.to_string().contains(&not_a_dir.display().to_string()), "{err}");
}

#[test]
fn the_notice_says_the_weights_are_untrained() {
    assert!(DEMO_NOTICE.contains("untrained") && DEMO_NOTICE.contains("noise"), "{DEMO_NOTICE}");
}

/// This process's CPU time so far (user + system), from /proc/self/stat at 100 ticks per second
/// (Linux); zero elsewhere. Wall time on a shared machine overstates the cost, CPU time does not.
fn cpu_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f` once, printing its wall and CPU time.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let out = f();
    eprintln!("{what}: wall {:.2} s, cpu {:.2} s", wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    out
}

/// Timings for choosing the example requests' steps (not a test: run with `--ignored
/// --nocapture`): one UNet call at batch 2 (classifier-free guidance) and 1 on 128x128 latents
/// (1024x1024 images), and one VAE decode of 1 x 128x128 latents, whole and in 512-pixel tiles,
/// f32 on the CPU; then a whole 1024x1024 image through the engine (2 steps, guidance), which
/// must be neither flat nor saturated (saved as PNG to `$KILN_DEMO_PNG` when set, to look at).
/// `$KILN_MEASURE_MODEL` names another SDXL-shaped diffusers folder to time instead.
#[test]
#[ignore]
fn measure_demo_speed_at_1024() {
    let cache = tempfile::tempdir().unwrap();
    let path = timed("create the demo model", || ensure_demo_model(cache.path()).unwrap());
    timed("check the cached demo model", || ensure_demo_model(cache.path()).unwrap());
    // Another SDXL-shaped folder to time instead (to try a topology before changing the demo's).
    let path = std::env::var_os("KILN_MEASURE_MODEL").map_or(path, PathBuf::from);
    let ckpt = Checkpoint::open(&path).unwrap();
    let unet = UNet::load(&ckpt, DType::F32, Device::Cpu).unwrap();
    let mut vae = Vae::load(&ckpt, DType::F32, Device::Cpu).unwrap();
    let mut g = TorchGenerator::new(1);
    for batch in [2, 1] {
        let latents = g.randn_tensor([batch, 4, 128, 128], DType::F32, Device::Cpu).unwrap();
        let context = random(&mut g, &[batch, 77, 48]);
        let time_ids = [1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0].repeat(batch);
        let added = AddedConditioning { text_embeds: random(&mut g, &[batch, 32]), time_ids };
        for _ in 0..2 {
            timed(&format!("UNet, batch {batch}, 128x128 latents"), || {
                unet.forward(&latents, &vec![500.0; batch], &context, Some(&added)).unwrap()
            });
        }
    }
    let z = g.randn_tensor([1, 4, 128, 128], DType::F32, Device::Cpu).unwrap();
    for _ in 0..2 {
        timed("VAE decode, 1 x 128x128 latents -> 1024x1024", || vae.decode(&z).unwrap());
    }
    vae.set_tiling(Some(Tiling { latent_tile: 64, sample_tile: 512, overlap_factor: 0.25 }));
    timed("VAE decode in 512-pixel tiles, 1 x 128x128 latents -> 1024x1024", || vae.decode(&z).unwrap());

    let engine = Engine::load(&path, DType::F32, Device::Cpu).unwrap();
    let mut one = job("a lighthouse on a cliff at dusk", vec![1], None);
    (one.width, one.height) = (1024, 1024);
    let images = timed("Engine::render, one 1024x1024 image, 2 steps with guidance", || {
        engine.render(&[one], 4, &mut |_, _| {}).unwrap()
    });
    let image = &images[0][0];
    let values: Vec<f32> = image.as_raw().iter().map(|&v| v as f32).collect();
    let (mean, std) = mean_std(&values);
    let clipped = image.as_raw().iter().filter(|&&v| v == 0 || v == 255).count() as f64 / values.len() as f64;
    eprintln!("the image: mean {mean:.1}, std {std:.1}, {:.1}% of values at 0 or 255", 100.0 * clipped);
    assert!(std > 8.0 && clipped < 0.25, "a flat or saturated image");
    if let Some(png) = std::env::var_os("KILN_DEMO_PNG") {
        image.save(&png).unwrap();
        eprintln!("saved to {}", Path::new(&png).display());
    }
}
