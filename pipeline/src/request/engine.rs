//! kiln's `engine` request field: which of OctoAI's image engines (the `{engine}` of its
//! `/generate/{engine}` endpoints) a request was written for, checked against the model that
//! renders it, so a batch meant for SSD-1B cannot silently render on an SDXL checkpoint.

use kiln_runtime::checkpoint::Family;

/// An OctoAI image engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineName {
    /// `sdxl`: SDXL base and its fine-tunes (also the refiner and SDXL inpainting).
    Sdxl,
    /// `sd`: Stable Diffusion 1.5 and its inpainting model.
    Sd,
    /// `ssd`: Segmind's SSD-1B.
    Ssd,
    /// `controlnet-sdxl`: SDXL base under a ControlNet.
    ControlnetSdxl,
}

impl EngineName {
    /// Every engine, in the order error messages list them.
    pub const ALL: [EngineName; 4] =
        [EngineName::Sdxl, EngineName::Sd, EngineName::Ssd, EngineName::ControlnetSdxl];

    /// The name as OctoAI's endpoints spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineName::Sdxl => "sdxl",
            EngineName::Sd => "sd",
            EngineName::Ssd => "ssd",
            EngineName::ControlnetSdxl => "controlnet-sdxl",
        }
    }

    /// The engine a model of `family` serves (SDXL base serves `controlnet-sdxl` too).
    pub fn of(family: Family) -> EngineName {
        match family {
            Family::Sd15 | Family::Sd15Inpaint => EngineName::Sd,
            Family::SdxlBase | Family::SdxlRefiner | Family::SdxlInpaint => EngineName::Sdxl,
            Family::Ssd1b => EngineName::Ssd,
        }
    }

    /// Whether a model of `family` renders requests for this engine.
    pub fn fits(self, family: Family) -> bool {
        match self {
            EngineName::ControlnetSdxl => family == Family::SdxlBase,
            engine => engine == EngineName::of(family),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_fits_its_engine_only() {
        for family in Family::ALL {
            let fitting: Vec<&str> =
                EngineName::ALL.into_iter().filter(|e| e.fits(family)).map(EngineName::as_str).collect();
            let want: &[&str] = match family {
                Family::Sd15 | Family::Sd15Inpaint => &["sd"],
                Family::SdxlBase => &["sdxl", "controlnet-sdxl"],
                Family::SdxlRefiner | Family::SdxlInpaint => &["sdxl"],
                Family::Ssd1b => &["ssd"],
            };
            assert_eq!(fitting, want, "{family}");
        }
    }
}
