//! The lines of `responses.jsonl`: OctoAI's `ImageGenerationResponse` plus the request's id, or
//! the request's id and OctoAI's 422 body.

use serde::Serialize;

use super::RequestError;

/// One generated image (OctoAI's `ImageGeneration`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageGeneration {
    /// The encoded image, base64; `None` only when removed for safety (kiln never removes).
    pub image_b64: Option<String>,
    /// The seed that makes this image again.
    pub seed: u32,
    /// Whether a safety checker removed the image (kiln has none: always false).
    pub removed_for_safety: bool,
    /// A safety checker's score (kiln has none: always `None`, written as null).
    pub safety_score: Option<f64>,
}

impl ImageGeneration {
    /// An image kiln made: no safety checker ran.
    pub fn new(image_b64: String, seed: u32) -> ImageGeneration {
        ImageGeneration { image_b64: Some(image_b64), seed, removed_for_safety: false, safety_score: None }
    }
}

/// A completed request: `{"id": ..., "images": [...], "prediction_time_ms": ...}`, plus
/// `"warnings": [...]` when there are any.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Response {
    /// The request's id.
    pub id: String,
    /// One entry per image, in seed order.
    pub images: Vec<ImageGeneration>,
    /// Time spent generating this request's images, in milliseconds.
    pub prediction_time_ms: f64,
    /// What kiln changed in the request, said for a person (prompt tokens dropped past the
    /// family's limit); the key is left out when there is nothing to say.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A request that could not run: `{"id": ..., "error": {"detail": [...]}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorRecord {
    /// The request's id (the line number when it has none).
    pub id: String,
    /// What is wrong, as OctoAI's 422 body.
    pub error: RequestError,
}

/// A response as an HTTP body: OctoAI's `ImageGenerationResponse` (`images`,
/// `prediction_time_ms`), plus `warnings` when there are any; the id stays with the caller.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResponseBody<'a> {
    /// One entry per image, in seed order.
    pub images: &'a [ImageGeneration],
    /// Time spent generating the images, in milliseconds.
    pub prediction_time_ms: f64,
    /// As [`Response::warnings`].
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub warnings: &'a [String],
}

impl Response {
    /// The response as `POST /generate/{engine}` answers it.
    pub fn body(&self) -> ResponseBody<'_> {
        ResponseBody {
            images: &self.images,
            prediction_time_ms: self.prediction_time_ms,
            warnings: &self.warnings,
        }
    }
}
