"""The published diffusers configs of SD 1.5, SD 1.5 inpainting, SDXL base, SDXL refiner and SDXL
inpainting, written out by hand (no model hub here). Used by `make_key_manifests.py`.

Sources and confidence:
- SD 1.5 (runwayml/stable-diffusion-v1-5): unet, scheduler (PNDM) and model_index are quoted
  verbatim in several public repositories (found with the `search` tool, e.g. a test that copies
  "scheduler/scheduler_config.json ... Verbatim"); vae and text_encoder are the well-known files.
- SD 1.5 inpainting (runwayml/stable-diffusion-inpainting): the SD 1.5 files with in_channels 9,
  diffusers "0.6.0.dev0" and a DDIMScheduler (scheduler quoted verbatim in public code).
- SDXL base 1.0: the unet config matches the copy in kohya-ss/sd-scripts
  `library/sdxl_model_util.py` (DIFFUSERS_SDXL_UNET_CONFIG); the scheduler is quoted verbatim in
  public tests. text_encoder / text_encoder_2 / vae are reconstructions of the published files.
- SDXL refiner 1.0: reconstructed from sgm's `sd_xl_refiner.yaml` (model_channels 384,
  channel_mult [1, 2, 4, 4], attention at levels 1 and 2 only, transformer_depth 4,
  context_dim 1280, adm_in_channels 2560, num_head_channels 64) and checked by its UNet
  parameter count (2,259,526,660).
- SDXL inpainting 0.1 (diffusers/stable-diffusion-xl-1.0-inpainting-0.1): SDXL base with
  in_channels 9; `_diffusers_version` strings of this repo are a best guess.
- SSD-1B (segmind/SSD-1B): SDXL base with fewer transformer blocks. The depths are ComfyUI's
  `SSD_1B` entry in comfy/model_detection.py, read from the published weights there:
  `transformer_depth` [0, 0, 2, 2, 4, 4] (down levels 1 and 2: 2 and 4 blocks per attention),
  `transformer_depth_output` [0, 0, 0, 1, 1, 2, 10, 4, 4] (consumed from the end: up block 0's
  attentions 4, 4, 10; up block 1's 2, 1, 1) and `transformer_depth_middle` -1 (a mid block of
  one resnet, no transformer). Written in diffusers' terms: `transformer_layers_per_block`
  [1, 2, 4], `reverse_transformer_layers_per_block` [[4, 4, 10], [2, 1, 1], [1, 1, 1]] and
  `mid_block_type` "UNetMidBlock2D" (diffusers builds that with no attention and one resnet).
  The other components and the scheduler are SDXL base's (StableDiffusionXLPipeline loads it);
  the repository's exact config.json text was not available, so bookkeeping keys are a guess.
The SD 1.5 repositories also hold safety_checker/ (CLIP ViT-L/14 vision tower) and
feature_extractor/; model_index.json lists them as published, but their configs and tensors are
left out: kiln does not load them, and the published safety_checker/model.safetensors is ~5 KB of
header larger than the state dict of diffusers' StableDiffusionSafetyChecker explains, so its
exact tensor list could not be pinned down here.
Values that decide tensor names and shapes are checked by the parameter counts asserted in
`make_key_manifests.py`; bookkeeping keys (`_diffusers_version`, `_name_or_path`,
`transformers_version`) are best-effort and are not used by any loader for shapes.
"""

from __future__ import annotations

import copy

_SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

_SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

_CLIP_L = {
    "_name_or_path": "openai/clip-vit-large-patch14",
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "torch_dtype": "float32",
    "transformers_version": "4.22.0.dev0",
    "vocab_size": 49408,
}

_OPENCLIP_BIGG = {
    "architectures": ["CLIPTextModelWithProjection"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "pad_token_id": 1,
    "projection_dim": 1280,
    "torch_dtype": "float32",
    "transformers_version": "4.32.0.dev0",
    "vocab_size": 49408,
}

_PNDM_SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

_DDIM_SD15_INPAINT = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.6.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
    "skip_prk_steps": True,
}

_EULER_SDXL = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

_SDXL_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.19.0.dev0",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

_SDXL_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.20.0.dev0",
    "_name_or_path": "../sdxl-vae/",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}


def _with(base: dict, **changes) -> dict:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


_SDXL_REFINER_UNET = _with(
    _SDXL_UNET,
    attention_head_dim=[6, 12, 24, 24],
    block_out_channels=[384, 768, 1536, 1536],
    cross_attention_dim=1280,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    projection_class_embeddings_input_dim=2560,
    transformer_layers_per_block=4,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
)

_SSD_1B_UNET = _with(
    _SDXL_UNET,
    _diffusers_version="0.22.0.dev0",
    mid_block_type="UNetMidBlock2D",
    transformer_layers_per_block=[1, 2, 4],
    reverse_transformer_layers_per_block=[[4, 4, 10], [2, 1, 1], [1, 1, 1]],
)

_SD15_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

_SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "_diffusers_version": "0.19.0.dev0",
    "force_zeros_for_empty_prompt": True,
    "add_watermarker": None,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# family -> {component folder: config}; "model_index.json" is the pipeline's own file.
FAMILIES: dict[str, dict] = {
    "sd15": {
        "model_index.json": _SD15_INDEX,
        "unet": _SD15_UNET,
        "vae": _SD15_VAE,
        "text_encoder": _CLIP_L,
        "scheduler": _PNDM_SD15,
    },
    "sd15_inpaint": {
        "model_index.json": _with(_SD15_INDEX, _class_name="StableDiffusionInpaintPipeline",
                                  _diffusers_version="0.6.0.dev0",
                                  scheduler=["diffusers", "DDIMScheduler"]),
        "unet": _with(_SD15_UNET, _diffusers_version="0.6.0.dev0", in_channels=9),
        "vae": _with(_SD15_VAE, _diffusers_version="0.6.0.dev0"),
        "text_encoder": _CLIP_L,
        "scheduler": _DDIM_SD15_INPAINT,
    },
    "sdxl_base": {
        "model_index.json": _SDXL_INDEX,
        "unet": _SDXL_UNET,
        "vae": _SDXL_VAE,
        "text_encoder": _with(_CLIP_L, transformers_version="4.32.0.dev0"),
        "text_encoder_2": _OPENCLIP_BIGG,
        "scheduler": _EULER_SDXL,
    },
    "sdxl_refiner": {
        "model_index.json": _with(_SDXL_INDEX, _class_name="StableDiffusionXLImg2ImgPipeline",
                                  force_zeros_for_empty_prompt=False, requires_aesthetics_score=True,
                                  text_encoder=[None, None], tokenizer=[None, None]),
        "unet": _SDXL_REFINER_UNET,
        "vae": _SDXL_VAE,
        "text_encoder_2": _OPENCLIP_BIGG,
        "scheduler": _EULER_SDXL,
    },
    "sdxl_inpaint": {
        "model_index.json": _with(_SDXL_INDEX, _class_name="StableDiffusionXLInpaintPipeline",
                                  _diffusers_version="0.21.0.dev0", requires_aesthetics_score=False),
        "unet": _with(_SDXL_UNET, _diffusers_version="0.21.0.dev0", in_channels=9),
        "vae": _SDXL_VAE,
        "text_encoder": _with(_CLIP_L, transformers_version="4.32.0.dev0"),
        "text_encoder_2": _OPENCLIP_BIGG,
        "scheduler": _with(_EULER_SDXL, _diffusers_version="0.21.0.dev0"),
    },
    "ssd_1b": {
        "model_index.json": _with(_SDXL_INDEX, _diffusers_version="0.22.0.dev0"),
        "unet": _SSD_1B_UNET,
        "vae": _SDXL_VAE,
        "text_encoder": _with(_CLIP_L, transformers_version="4.32.0.dev0"),
        "text_encoder_2": _OPENCLIP_BIGG,
        "scheduler": _EULER_SDXL,
    },
}


def family(name: str) -> dict:
    """A deep copy of one family's configs."""
    return copy.deepcopy(FAMILIES[name])
