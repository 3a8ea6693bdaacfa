//! OctoAI's 21 sampler names and the diffusers scheduler (class and options) each one means.
//!
//! | OctoAI name | diffusers scheduler | options |
//! | --- | --- | --- |
//! | `PNDM` | `PNDMScheduler` | |
//! | `LMS`, `KLMS` | `LMSDiscreteScheduler` | (k-diffusion's LMS; "K" names its origin) |
//! | `DDIM` | `DDIMScheduler` | eta 0 |
//! | `DDPM` | `DDPMScheduler` | |
//! | `HEUN`, `K_HEUN` | `HeunDiscreteScheduler` | |
//! | `K_EULER` | `EulerDiscreteScheduler` | |
//! | `K_EULER_ANCESTRAL` | `EulerAncestralDiscreteScheduler` | |
//! | `DPM_SOLVER_MULTISTEP` | `DPMSolverMultistepScheduler` | (dpmsolver++, order 2) |
//! | `DPM_PLUS_PLUS_2M_KARRAS` | `DPMSolverMultistepScheduler` | `use_karras_sigmas=True` |
//! | `DPM_PLUS_PLUS_2M_SDE` | `DPMSolverMultistepScheduler` | `algorithm_type="sde-dpmsolver++"` |
//! | `DPM_PLUS_PLUS_2M_SDE_KARRAS` | `DPMSolverMultistepScheduler` | sde-dpmsolver++, Karras sigmas |
//! | `DPM_SINGLE` | `DPMSolverSinglestepScheduler` | |
//! | `DPM_2` | `KDPM2DiscreteScheduler` | |
//! | `DPM_2_KARRAS` | `KDPM2DiscreteScheduler` | `use_karras_sigmas=True` |
//! | `DPM_2_ANCESTRAL` | `KDPM2AncestralDiscreteScheduler` | |
//! | `DPM_2_ANCESTRAL_KARRAS` | `KDPM2AncestralDiscreteScheduler` | `use_karras_sigmas=True` |
//! | `DPM_PLUS_PLUS_SDE_KARRAS` | `DPMSolverSDEScheduler` | `use_karras_sigmas=True` |
//! | `UNI_PC` | `UniPCMultistepScheduler` | |
//! | `LCM` | `LCMScheduler` | |
//!
//! `tools/make_sampler_fixtures.py` holds the same table.

use std::fmt;
use std::str::FromStr;

use super::SamplerError;

/// One of OctoAI's sampler names (the API's `Scheduler` enum), parsed exactly as spelled there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum SamplerName {
    /// `PNDMScheduler`.
    PNDM,
    /// `LMSDiscreteScheduler`.
    LMS,
    /// `LMSDiscreteScheduler` (k-diffusion's LMS, the same scheduler as `LMS`).
    KLMS,
    /// `DDIMScheduler`.
    DDIM,
    /// `DDPMScheduler`.
    DDPM,
    /// `HeunDiscreteScheduler`.
    HEUN,
    /// `HeunDiscreteScheduler` (the same scheduler as `HEUN`).
    K_HEUN,
    /// `EulerDiscreteScheduler`.
    K_EULER,
    /// `EulerAncestralDiscreteScheduler`.
    K_EULER_ANCESTRAL,
    /// `DPMSolverMultistepScheduler` (DPM-Solver++ 2M).
    DPM_SOLVER_MULTISTEP,
    /// `DPMSolverMultistepScheduler` with Karras sigmas.
    DPM_PLUS_PLUS_2M_KARRAS,
    /// `DPMSolverMultistepScheduler`, `algorithm_type="sde-dpmsolver++"`.
    DPM_PLUS_PLUS_2M_SDE,
    /// `DPMSolverMultistepScheduler`, SDE-DPM-Solver++ with Karras sigmas.
    DPM_PLUS_PLUS_2M_SDE_KARRAS,
    /// `DPMSolverSinglestepScheduler`.
    DPM_SINGLE,
    /// `KDPM2DiscreteScheduler`.
    DPM_2,
    /// `KDPM2DiscreteScheduler` with Karras sigmas.
    DPM_2_KARRAS,
    /// `KDPM2AncestralDiscreteScheduler`.
    DPM_2_ANCESTRAL,
    /// `KDPM2AncestralDiscreteScheduler` with Karras sigmas.
    DPM_2_ANCESTRAL_KARRAS,
    /// `DPMSolverSDEScheduler` with Karras sigmas.
    DPM_PLUS_PLUS_SDE_KARRAS,
    /// `UniPCMultistepScheduler`.
    UNI_PC,
    /// `LCMScheduler`.
    LCM,
}

impl SamplerName {
    /// Every name, in the order of OctoAI's API schema.
    pub const ALL: [SamplerName; 21] = [
        SamplerName::PNDM,
        SamplerName::LMS,
        SamplerName::KLMS,
        SamplerName::DDIM,
        SamplerName::DDPM,
        SamplerName::HEUN,
        SamplerName::K_HEUN,
        SamplerName::K_EULER,
        SamplerName::K_EULER_ANCESTRAL,
        SamplerName::DPM_SOLVER_MULTISTEP,
        SamplerName::DPM_PLUS_PLUS_2M_KARRAS,
        SamplerName::DPM_PLUS_PLUS_2M_SDE,
        SamplerName::DPM_PLUS_PLUS_2M_SDE_KARRAS,
        SamplerName::DPM_SINGLE,
        SamplerName::DPM_2,
        SamplerName::DPM_2_KARRAS,
        SamplerName::DPM_2_ANCESTRAL,
        SamplerName::DPM_2_ANCESTRAL_KARRAS,
        SamplerName::DPM_PLUS_PLUS_SDE_KARRAS,
        SamplerName::UNI_PC,
        SamplerName::LCM,
    ];

    /// The name as OctoAI's API spells it.
    pub fn as_str(self) -> &'static str {
        use SamplerName::*;
        match self {
            PNDM => "PNDM",
            LMS => "LMS",
            KLMS => "KLMS",
            DDIM => "DDIM",
            DDPM => "DDPM",
            HEUN => "HEUN",
            K_HEUN => "K_HEUN",
            K_EULER => "K_EULER",
            K_EULER_ANCESTRAL => "K_EULER_ANCESTRAL",
            DPM_SOLVER_MULTISTEP => "DPM_SOLVER_MULTISTEP",
            DPM_PLUS_PLUS_2M_KARRAS => "DPM_PLUS_PLUS_2M_KARRAS",
            DPM_PLUS_PLUS_2M_SDE => "DPM_PLUS_PLUS_2M_SDE",
            DPM_PLUS_PLUS_2M_SDE_KARRAS => "DPM_PLUS_PLUS_2M_SDE_KARRAS",
            DPM_SINGLE => "DPM_SINGLE",
            DPM_2 => "DPM_2",
            DPM_2_KARRAS => "DPM_2_KARRAS",
            DPM_2_ANCESTRAL => "DPM_2_ANCESTRAL",
            DPM_2_ANCESTRAL_KARRAS => "DPM_2_ANCESTRAL_KARRAS",
            DPM_PLUS_PLUS_SDE_KARRAS => "DPM_PLUS_PLUS_SDE_KARRAS",
            UNI_PC => "UNI_PC",
            LCM => "LCM",
        }
    }

    /// The diffusers scheduler class this name means.
    pub fn diffusers_class(self) -> &'static str {
        use SamplerName::*;
        match self {
            PNDM => "PNDMScheduler",
            LMS | KLMS => "LMSDiscreteScheduler",
            DDIM => "DDIMScheduler",
            DDPM => "DDPMScheduler",
            HEUN | K_HEUN => "HeunDiscreteScheduler",
            K_EULER => "EulerDiscreteScheduler",
            K_EULER_ANCESTRAL => "EulerAncestralDiscreteScheduler",
            DPM_SOLVER_MULTISTEP
            | DPM_PLUS_PLUS_2M_KARRAS
            | DPM_PLUS_PLUS_2M_SDE
            | DPM_PLUS_PLUS_2M_SDE_KARRAS => "DPMSolverMultistepScheduler",
            DPM_SINGLE => "DPMSolverSinglestepScheduler",
            DPM_2 | DPM_2_KARRAS => "KDPM2DiscreteScheduler",
            DPM_2_ANCESTRAL | DPM_2_ANCESTRAL_KARRAS => "KDPM2AncestralDiscreteScheduler",
            DPM_PLUS_PLUS_SDE_KARRAS => "DPMSolverSDEScheduler",
            UNI_PC => "UniPCMultistepScheduler",
            LCM => "LCMScheduler",
        }
    }

    /// Whether the name asks for Karras sigmas (`use_karras_sigmas=True`).
    pub fn karras(self) -> bool {
        use SamplerName::*;
        matches!(
            self,
            DPM_PLUS_PLUS_2M_KARRAS
                | DPM_PLUS_PLUS_2M_SDE_KARRAS
                | DPM_2_KARRAS
                | DPM_2_ANCESTRAL_KARRAS
                | DPM_PLUS_PLUS_SDE_KARRAS
        )
    }

    /// Whether each step draws fresh noise (ancestral and SDE samplers, DDPM, LCM).
    pub fn stochastic(self) -> bool {
        use SamplerName::*;
        matches!(
            self,
            DDPM | K_EULER_ANCESTRAL
                | DPM_PLUS_PLUS_2M_SDE
                | DPM_PLUS_PLUS_2M_SDE_KARRAS
                | DPM_2_ANCESTRAL
                | DPM_2_ANCESTRAL_KARRAS
                | DPM_PLUS_PLUS_SDE_KARRAS
                | LCM
        )
    }
}

impl fmt::Display for SamplerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SamplerName {
    type Err = SamplerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SamplerName::ALL
            .into_iter()
            .find(|name| name.as_str() == s)
            .ok_or_else(|| SamplerError::UnknownName { name: s.to_string(), allowed: allowed_names() })
    }
}

/// The 21 names, comma-separated, for error messages.
fn allowed_names() -> String {
    SamplerName::ALL.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
}
