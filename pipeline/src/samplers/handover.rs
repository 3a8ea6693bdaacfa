//! One schedule split between SDXL base and refiner, as diffusers' "ensemble of experts": the
//! base pipeline stops at `denoising_end` and the refiner's img2img pipeline picks the still
//! noisy latents up at `denoising_start`, both set to the same fraction (OctoAI's
//! `high_noise_frac`).
//!
//! The cut is the training timestep `round(T - fraction * T)` (T = `num_train_timesteps`,
//! Python's round, ties to even): the base runs the calls at or above it; the refiner builds the
//! whole schedule again and runs the calls below it (one more for second-order samplers when
//! that count is even, so it never starts between the two calls of a step). diffusers honours a
//! fraction only strictly between 0 and 1: at 0 or 1 the base runs every step and the refiner,
//! its `denoising_start` ignored, runs its pipeline's default strength (0.3 for img2img, 0.9999
//! for inpainting) on the finished latents without adding noise; kiln does the same.

/// The refiner img2img pipeline's default `strength`, which applies when the fraction is not
/// honoured.
pub const IMG2IMG_DEFAULT_STRENGTH: f64 = 0.3;
/// The inpainting pipeline's default `strength`, likewise.
pub const INPAINT_DEFAULT_STRENGTH: f64 = 0.9999;

/// Whether diffusers honours the fraction (`0 < fraction < 1`).
pub fn honoured(fraction: f64) -> bool {
    fraction > 0.0 && fraction < 1.0
}

/// The cut in training timesteps: `int(round(T - fraction * T))`.
fn cutoff(fraction: f64, num_train_timesteps: usize) -> f64 {
    let t = num_train_timesteps as f64;
    (t - fraction * t).round_ties_even()
}

/// How many of `timesteps` (the calls the base would run, after any img2img skip) the base runs
/// before handing over at `fraction`.
pub fn base_calls(timesteps: &[f64], fraction: f64, num_train_timesteps: usize) -> usize {
    if !honoured(fraction) {
        return timesteps.len();
    }
    let cut = cutoff(fraction, num_train_timesteps);
    timesteps.iter().filter(|&&t| t >= cut).count()
}

/// The refiner's first model call in its whole schedule `timesteps` (built for `steps` steps of
/// a sampler of `order` calls per step, without strength), as diffusers' img2img `get_timesteps`
/// with `denoising_start = fraction`; `default_strength` is the pipeline's, which applies when
/// the fraction is not honoured.
pub fn refiner_begin(
    timesteps: &[f64],
    fraction: f64,
    num_train_timesteps: usize,
    steps: usize,
    order: usize,
    default_strength: f64,
) -> usize {
    if !honoured(fraction) {
        // `int(steps * strength)` steps run; the ones before are skipped.
        let run = ((steps as f64 * default_strength) as usize).min(steps);
        return ((steps - run) * order).min(timesteps.len());
    }
    let cut = cutoff(fraction, num_train_timesteps);
    let mut run = timesteps.iter().filter(|&&t| t < cut).count();
    if order == 2 && run % 2 == 0 {
        run += 1;
    }
    timesteps.len().saturating_sub(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_rounds_ties_to_even_as_python() {
        assert_eq!(cutoff(0.8, 1000), 200.0);
        assert_eq!(cutoff(0.0015, 1000), 998.0, "998.5 rounds to the even 998");
        assert_eq!(cutoff(0.0025, 1000), 998.0, "997.5 rounds to the even 998");
    }

    #[test]
    fn base_and_refiner_split_a_first_order_schedule() {
        let ts: Vec<f64> = (0..10).map(|i| 999.0 - 100.0 * i as f64).collect(); // 999, 899, ..., 99
        assert_eq!(base_calls(&ts, 0.8, 1000), 8, "999 .. 299 are at or above 200");
        assert_eq!(
            refiner_begin(&ts, 0.8, 1000, 10, 1, IMG2IMG_DEFAULT_STRENGTH),
            8,
            "199 and 99 are below it"
        );
        for fraction in [0.0, 1.0] {
            assert_eq!(base_calls(&ts, fraction, 1000), 10);
            let begin = |strength| refiner_begin(&ts, fraction, 1000, 10, 1, strength);
            assert_eq!(begin(IMG2IMG_DEFAULT_STRENGTH), 7, "strength 0.3: the last 3 steps");
            assert_eq!(begin(INPAINT_DEFAULT_STRENGTH), 1, "strength 0.9999: int(9.999) = 9 steps");
        }
    }

    #[test]
    fn a_second_order_refiner_starts_on_a_whole_step() {
        // Heun's interleaved calls: 999, then each later timestep twice.
        let ts = [999.0, 666.0, 666.0, 333.0, 333.0, 0.0, 0.0];
        let begin = |fraction| refiner_begin(&ts, fraction, 1000, 4, 2, IMG2IMG_DEFAULT_STRENGTH);
        assert_eq!(begin(0.5), 2, "4 calls below 500, one more: 5");
        assert_eq!(begin(0.8), 4, "3 calls below 200");
    }
}
