//! One JSONL line to a [`Line`]: the request's id and either a [`Request`] or every field
//! error of the line, found in one pass as pydantic does (fields in the schema's order).

use serde_json::{Map, Value};

use super::coerce::{self, Issue, Limits};
use super::error::{FieldError, Loc, RequestError, value_error};
use super::seed::{self, MAX_IMAGES};
use super::style::STYLES;
use super::wide::{self, WideNumbers};
use super::{
    DEFAULT_FULL_RES_PADDING, DEFAULT_HIGH_NOISE_FRAC, EngineName, ImageEncoding, KILN_FIELDS, Request,
    SamplerName,
};
use super::{control, ip, unimplemented, unknown};

/// The longest prompt (and negative prompt, and second prompts) the schema allows.
const MAX_PROMPT: usize = 10_000;
/// The longest `id` kiln accepts (ids name image files).
const MAX_ID: usize = 200;

/// Every field of OctoAI's `ImageGenerationRequest`, in the schema's order.
pub(crate) const KNOWN_FIELDS: [&str; 33] = [
    "cfg_scale",
    "checkpoint",
    "clip_skip",
    "controlnet",
    "controlnet_conditioning_scale",
    "controlnet_early_stop",
    "controlnet_image",
    "controlnet_preprocess",
    "height",
    "high_noise_frac",
    "image_encoding",
    "init_image",
    "inpaint_full_res",
    "inpaint_full_res_padding",
    "log_prompt",
    "loras",
    "mask_image",
    "negative_prompt",
    "negative_prompt_2",
    "num_images",
    "outpainting",
    "prompt",
    "prompt_2",
    "sampler",
    "seed",
    "steps",
    "strength",
    "style_preset",
    "textual_inversions",
    "transfer_images",
    "use_refiner",
    "vae",
    "width",
];

/// One parsed line of a JSONL request file.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The request's `id`, or the 1-based line number when it has none (or an invalid one).
    pub id: String,
    /// The request, or OctoAI's 422 body listing everything wrong with it.
    pub request: Result<Request, RequestError>,
    /// Things worth telling the user that do not stop the request (none today: unknown fields,
    /// once warnings, are errors).
    pub warnings: Vec<String>,
}

/// Parses one line (`line_number` is 1-based). Never panics: malformed JSON, a body that is not
/// an object and every bad field become the line's [`RequestError`].
pub fn parse_line(text: &str, line_number: usize) -> Line {
    parse_for_engine(text, line_number, None)
}

/// Parses a body sent to `POST /generate/{endpoint}`: the path's engine is the request's
/// `engine` (with its rules: `controlnet-sdxl` needs `controlnet_image`), and a body naming
/// another engine is an error on `engine`. Otherwise as [`parse_line`].
pub fn parse_for_engine(text: &str, line_number: usize, endpoint: Option<EngineName>) -> Line {
    let fallback_id = line_number.to_string();
    let parsed = match wide::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let error = RequestError::body(
                format!("JSON decode error: {e}{}", line_ending_hint(text)),
                "json_invalid",
            );
            return Line { id: fallback_id, request: Err(error), warnings: Vec::new() };
        }
    };
    let Value::Object(body) = &parsed.value else {
        let error = RequestError::body(
            "Input should be a valid dictionary or instance of ImageGenerationRequest",
            "model_type",
        );
        return Line { id: fallback_id, request: Err(error), warnings: Vec::new() };
    };
    let wide = parsed.wide_numbers(body);
    let mut reader = Reader { body, wide: &wide, errors: RequestError::default(), endpoint };
    let id = reader.id().unwrap_or(fallback_id);
    let request = reader.request();
    // pydantic lists unknown fields after every error of the schema's fields.
    unknown::extra_forbidden(text, body).into_iter().for_each(|e| reader.errors.push(e));
    let request = match request {
        Some(request) if reader.errors.is_empty() => Ok(request),
        _ => Err(reader.errors),
    };
    Line { id, request, warnings: Vec::new() }
}

/// A hint for a line that holds carriage returns: a file with CR-only line endings (classic Mac
/// OS) reads as one line of several requests, which fails as JSON with "trailing characters".
fn line_ending_hint(text: &str) -> &'static str {
    if text.contains('\r') {
        "; the line holds carriage returns (CR): if the file's lines end in CR alone, convert them \
         to LF (`tr '\\r' '\\n' < old.jsonl > new.jsonl`)"
    } else {
        ""
    }
}

/// Reads fields of one body, collecting every error.
pub(crate) struct Reader<'a> {
    pub body: &'a Map<String, Value>,
    /// The body's values that stand in for numbers serde_json could not hold.
    pub wide: &'a WideNumbers<'a>,
    pub errors: RequestError,
    /// The engine of the endpoint the body was sent to, if any.
    pub endpoint: Option<EngineName>,
}

impl<'a> Reader<'a> {
    /// The field's value when it is present.
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.body.get(name)
    }

    fn fail(&mut self, path: &[Loc], issue: Issue) {
        self.errors.push(FieldError::at(path, issue.msg, issue.kind));
    }

    /// The converted field: `None` when absent, null (for `nullable` fields) or invalid (the
    /// error is recorded). A null in a field that is not nullable is the converter's type error.
    fn read<T>(
        &mut self,
        name: &str,
        nullable: bool,
        convert: impl Fn(&Value) -> Result<T, Issue>,
    ) -> Option<T> {
        let value = self.raw(name)?;
        if nullable && value.is_null() {
            return None;
        }
        convert(value).map_err(|issue| self.fail(&[Loc::from(name)], issue)).ok()
    }

    /// A string field of at most `max` characters.
    pub fn string(&mut self, name: &str, max: Option<usize>, nullable: bool) -> Option<String> {
        self.read(name, nullable, |v| coerce::string(v, max))
    }

    /// An integer field within `limits`.
    pub fn int(&mut self, name: &str, limits: Limits, nullable: bool) -> Option<i128> {
        let wide = self.wide;
        self.read(name, nullable, |v| {
            let x = coerce::int(wide.input(v))?;
            limits.check(x as f64).map(|()| x)
        })
    }

    /// A number field within `limits`.
    pub fn float(&mut self, name: &str, limits: Limits, nullable: bool) -> Option<f64> {
        let wide = self.wide;
        self.read(name, nullable, |v| {
            let x = coerce::float(wide.input(v))?;
            limits.check(x).map(|()| x)
        })
    }

    /// A boolean field (never nullable in the schema).
    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        self.read(name, false, coerce::boolean)
    }

    /// A string-enum field: the index of its value in `names`.
    pub fn choice(&mut self, name: &str, names: &[&str], nullable: bool) -> Option<usize> {
        self.read(name, nullable, |v| coerce::one_of(v, names))
    }

    /// A nullable `{string: value}` field; each value is checked by `check`, which returns its
    /// errors (at `[name, key, ...]`). Returns the number of entries.
    pub fn dict(&mut self, name: &str, check: impl Fn(&Value) -> Vec<(Vec<Loc>, Issue)>) -> Option<usize> {
        let value = self.raw(name).filter(|v| !v.is_null())?;
        let Value::Object(map) = value else {
            self.fail(&[Loc::from(name)], Issue::new("dict_type", "Input should be a valid dictionary"));
            return None;
        };
        let mut ok = true;
        for (key, item) in map {
            for (rest, issue) in check(item) {
                let mut path = vec![Loc::from(name), Loc::from(key.as_str())];
                path.extend(rest);
                self.fail(&path, issue);
                ok = false;
            }
        }
        ok.then_some(map.len())
    }

    /// The request's `id`: a string naming it, safe as part of a file name.
    fn id(&mut self) -> Option<String> {
        let id = self.string("id", None, false)?;
        let bad = |c: char| c == '/' || c == '\\' || c.is_control();
        if id.is_empty() || id.chars().count() > MAX_ID || id.chars().any(bad) {
            self.errors.push(value_error(
                &[Loc::from("id")],
                format!(
                    "id must be 1 to {MAX_ID} characters without '/', '\\' or control characters \
                     (it names image files)"
                ),
            ));
            return None;
        }
        Some(id)
    }

    /// Every schema field, in the schema's order, then the rules that involve several fields.
    /// `None` when any error was found.
    fn request(&mut self) -> Option<Request> {
        let positive = Limits { gt: Some(0.0), ..Limits::default() };
        let unit = Limits { ge: Some(0.0), le: Some(1.0), ..Limits::default() };
        let cfg_scale = self.float("cfg_scale", Limits { le: Some(50.0), ..positive }, false);
        let checkpoint = self.string("checkpoint", None, true);
        let clip_skip =
            self.int("clip_skip", Limits { ge: Some(1.0), le: Some(12.0), ..Limits::default() }, true);
        let controls = control::read(self, unit);
        let height = self.int("height", Limits::default(), true);
        let high_noise_frac = self.float("high_noise_frac", unit, false);
        let encodings = ["jpeg", "png"];
        let image_encoding = self.choice("image_encoding", &encodings, false);
        let init_image = self.string("init_image", None, true);
        let inpaint_full_res = self.boolean("inpaint_full_res");
        let inpaint_full_res_padding = self.int("inpaint_full_res_padding", Limits::default(), false);
        self.boolean("log_prompt");
        let wide = self.wide;
        let loras = self.dict("loras", |v| whole(coerce::float(wide.input(v))));
        let loras = loras.map(|_| self.lora_weights());
        let mask_image = self.string("mask_image", None, true);
        let negative_prompt = self.string("negative_prompt", Some(MAX_PROMPT), true);
        let negative_prompt_2 = self.string("negative_prompt_2", Some(MAX_PROMPT), true);
        let num_images = self.int("num_images", Limits { le: Some(MAX_IMAGES as f64), ..positive }, false);
        let outpainting = self.boolean("outpainting");
        let prompt = match self.raw("prompt") {
            None => {
                self.errors.push(FieldError::at(&[Loc::from("prompt")], "Field required", "missing"));
                None
            }
            Some(_) => self.string("prompt", Some(MAX_PROMPT), false),
        };
        let prompt_2 = self.string("prompt_2", Some(MAX_PROMPT), true);
        let engine_names = EngineName::ALL.map(EngineName::as_str);
        let engine = self.choice("engine", &engine_names, true);
        let sampler_names = SamplerName::ALL.map(SamplerName::as_str);
        let sampler = self.choice("sampler", &sampler_names, false);
        let mut seed_errors = Vec::new();
        let seeds = seed::read(self.raw("seed"), self.wide, &mut seed_errors);
        seed_errors.into_iter().for_each(|e| self.errors.push(e));
        let steps = self.int("steps", Limits { le: Some(200.0), ..positive }, false);
        let strength = self.float("strength", Limits { le: Some(1.0), ..positive }, false);
        let style_names: Vec<&str> = STYLES.iter().map(|s| s.name).collect();
        let style_preset = self.choice("style_preset", &style_names, true);
        let textual_inversions = self.dict("textual_inversions", |v| whole(coerce::string(v, None)));
        let textual_inversions = textual_inversions.map(|_| self.trigger_words());
        let transfer_images = self.dict("transfer_images", string_list);
        let use_refiner = self.boolean("use_refiner");
        let vae = self.string("vae", None, true);
        let width = self.int("width", Limits::default(), true);

        let engine = match (engine.map(|i| EngineName::ALL[i]), self.endpoint) {
            (Some(asked), Some(path)) if asked != path => {
                let msg = format!(
                    "Value error, the body asks for the '{}' engine, but was sent to /generate/{}",
                    asked.as_str(),
                    path.as_str()
                );
                self.errors.push(FieldError::at(&[Loc::from("engine")], msg, "value_error"));
                Some(asked)
            }
            (asked, path) => asked.or(path),
        };
        let control = control::resolve(self, controls, engine);
        let ip = ip::read(self);
        unimplemented::check(self, &unimplemented::Asked { transfer_images });
        // `seed` was read even when broken; only a valid one is combined with num_images.
        let num_images_sent = self.raw("num_images").is_some();
        let seed_broken = self.errors.detail.iter().any(|e| e.loc.get(1) == Some(&Loc::from("seed")));
        let seeds = if seed_broken || (num_images_sent && num_images.is_none()) {
            None
        } else {
            let n = num_images.map(|n| n as usize);
            seed::per_image(seeds, n).map_err(|e| self.errors.push(e)).ok()
        };

        if !self.errors.is_empty() {
            self.sort_errors();
            return None;
        }
        Some(Request {
            engine,
            control,
            ip,
            prompt: prompt?,
            prompt_2,
            negative_prompt,
            negative_prompt_2,
            cfg_scale,
            steps: steps.map(|s| s as usize),
            sampler: sampler.map(|i| SamplerName::ALL[i]),
            seeds: seeds?,
            width: width.map(saturate),
            height: height.map(saturate),
            image_encoding: match image_encoding {
                Some(1) => ImageEncoding::Png,
                _ => ImageEncoding::Jpeg,
            },
            clip_skip: clip_skip.map(|c| c as usize),
            style_preset: style_preset.map(|i| &STYLES[i]),
            init_image,
            mask_image,
            strength: strength.unwrap_or(0.8),
            outpainting: outpainting.unwrap_or(false),
            checkpoint,
            loras: loras.unwrap_or_default(),
            vae,
            textual_inversions: textual_inversions.unwrap_or_default(),
            use_refiner,
            high_noise_frac: high_noise_frac.unwrap_or(DEFAULT_HIGH_NOISE_FRAC),
            inpaint_full_res: inpaint_full_res.unwrap_or(false),
            inpaint_full_res_padding: inpaint_full_res_padding.map_or(DEFAULT_FULL_RES_PADDING, saturate),
        })
    }

    /// The `textual_inversions` map's names and trigger words, sorted by name (read after
    /// [`Reader::dict`] checked every value).
    fn trigger_words(&self) -> Vec<(String, String)> {
        let Some(Value::Object(map)) = self.raw("textual_inversions") else { return Vec::new() };
        let mut words: Vec<(String, String)> = map
            .iter()
            .filter_map(|(name, v)| coerce::string(v, None).ok().map(|w| (name.clone(), w)))
            .collect();
        words.sort_by(|a, b| a.0.cmp(&b.0));
        words
    }

    /// The `loras` map's names and weights, sorted by name (read after [`Reader::dict`] checked
    /// every weight).
    fn lora_weights(&self) -> Vec<(String, f64)> {
        let Some(Value::Object(map)) = self.raw("loras") else { return Vec::new() };
        let mut loras: Vec<(String, f64)> = map
            .iter()
            .filter_map(|(name, v)| coerce::float(self.wide.input(v)).ok().map(|w| (name.clone(), w)))
            .collect();
        loras.sort_by(|a, b| a.0.cmp(&b.0));
        loras
    }
}

impl Reader<'_> {
    /// Puts the errors in schema field order (`id` first, fields outside the schema last),
    /// keeping the order within a field: kiln's own checks run after the type checks.
    fn sort_errors(&mut self) {
        let rank = |e: &FieldError| match e.loc.get(1) {
            Some(Loc::Field(f)) if KILN_FIELDS.contains(&f.as_str()) => 0,
            Some(Loc::Field(f)) => {
                KNOWN_FIELDS.iter().position(|k| k == f).map_or(KNOWN_FIELDS.len() + 1, |i| i + 1)
            }
            _ => 0,
        };
        self.errors.detail.sort_by_key(rank);
    }
}

/// A dictionary value's error, at the value itself.
fn whole<T>(result: Result<T, Issue>) -> Vec<(Vec<Loc>, Issue)> {
    result.err().map(|issue| (vec![], issue)).into_iter().collect()
}

/// `transfer_images` values: lists of strings.
fn string_list(value: &Value) -> Vec<(Vec<Loc>, Issue)> {
    let Value::Array(items) = value else {
        return vec![(vec![], Issue::new("list_type", "Input should be a valid list"))];
    };
    let errors = items.iter().enumerate().map(|(i, item)| (i, coerce::string(item, None)));
    errors.filter_map(|(i, r)| r.err().map(|issue| (vec![Loc::Index(i)], issue))).collect()
}

fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr_only_line_endings_get_a_hint() {
        let text = "{\"prompt\": \"a boat\", \"seed\": 3}\r{\"prompt\": \"a lake\", \"seed\": 4}\r";
        let lines = crate::runner::input::split_lines(text.as_bytes());
        assert_eq!(lines.len(), 1, "CR alone ends no JSONL line");
        let error = parse_line(lines[0].text.as_deref().unwrap(), 1).request.unwrap_err();
        let message = serde_json::to_value(&error).unwrap()["detail"][0]["msg"].as_str().unwrap().to_owned();
        assert!(message.contains("JSON decode error") && message.contains("CR alone"), "{message}");
        let error = parse_line("{\"prompt\": }", 1).request.unwrap_err();
        let message = serde_json::to_value(&error).unwrap()["detail"][0]["msg"].as_str().unwrap().to_owned();
        assert!(!message.contains("CR"), "no hint without carriage returns: {message}");
    }
}
