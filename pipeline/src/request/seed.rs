//! `seed`: one integer, a list of integers or nulls, or null; each seed in `1..2^32`.
//!
//! The schema's type is `int | list[int | None] | None`; pydantic tries both members of the
//! union and, when neither fits, reports both failures (locations `["seed", "int"]` and
//! `["seed", "list[nullable[int]]", i]`), which kiln mirrors. The range is stated in the
//! schema's prose ("greater than 0 and less than 2^32"): kiln reports it at `["seed"]` or
//! `["seed", i]`, with pydantic's `greater_than` / `less_than` wording.

use serde_json::Value;

use super::coerce::{self, Issue, Limits};
use super::error::{FieldError, Loc, value_error};
use super::wide::WideNumbers;

/// pydantic's name for the list member of the union.
const LIST_MEMBER: &str = "list[nullable[int]]";

/// The most images one request may ask for (`num_images` ≤ 16).
pub(crate) const MAX_IMAGES: usize = 16;

/// The seeds a request gave.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SeedSpec {
    /// One seed: image k uses seed + k.
    One(u32),
    /// One entry per image; `None` draws a random seed.
    List(Vec<Option<u32>>),
}

fn range() -> Limits {
    Limits { gt: Some(0.0), lt: Some(4_294_967_296.0), ..Limits::default() }
}

fn in_range(value: i128, path: &[Loc], errors: &mut Vec<FieldError>) -> Option<u32> {
    match range().check(value as f64) {
        Ok(()) => u32::try_from(value).ok(),
        Err(issue) => {
            errors.push(at(path, issue));
            None
        }
    }
}

fn at(path: &[Loc], issue: Issue) -> FieldError {
    FieldError::at(path, issue.msg, issue.kind)
}

/// Reads `seed` (absent or null: `None`); type and range errors go to `errors`.
pub(crate) fn read(
    value: Option<&Value>,
    wide: &WideNumbers<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<SeedSpec> {
    let value = value.filter(|v| !v.is_null())?;
    let seed = Loc::from("seed");
    let as_int = coerce::int(wide.input(value));
    if let Ok(int) = as_int {
        return in_range(int, &[seed], errors).map(SeedSpec::One);
    }
    let int_issue = as_int.err()?;
    let Value::Array(items) = value else {
        errors.push(at(&[seed.clone(), Loc::from("int")], int_issue));
        errors.push(at(
            &[seed, Loc::from(LIST_MEMBER)],
            Issue::new("list_type", "Input should be a valid list"),
        ));
        return None;
    };
    // Types first (as pydantic's union does), then kiln's range check.
    let mut type_errors = Vec::new();
    let mut ints = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.is_null() {
            ints.push(None);
            continue;
        }
        match coerce::int(wide.input(item)) {
            Ok(int) => ints.push(Some(int)),
            Err(issue) => type_errors.push(at(&[seed.clone(), Loc::from(LIST_MEMBER), Loc::Index(i)], issue)),
        }
    }
    if !type_errors.is_empty() {
        errors.push(at(&[seed, Loc::from("int")], int_issue));
        errors.extend(type_errors);
        return None;
    }
    let before = errors.len();
    let seeds: Vec<Option<u32>> = ints
        .iter()
        .enumerate()
        .map(|(i, int)| int.and_then(|int| in_range(int, &[seed.clone(), Loc::Index(i)], errors)))
        .collect();
    (errors.len() == before).then_some(SeedSpec::List(seeds))
}

/// One seed entry per image, from the seeds given and `num_images` (`None`: not sent). A list
/// sets the number of images (a different `num_images` is an error on `seed`); one seed `s`
/// gives `s, s + 1, ...`, which must stay below 2^32.
pub(crate) fn per_image(
    spec: Option<SeedSpec>,
    num_images: Option<usize>,
) -> Result<Vec<Option<u32>>, FieldError> {
    let seed = [Loc::from("seed")];
    match spec {
        None => Ok(vec![None; num_images.unwrap_or(1)]),
        Some(SeedSpec::One(first)) => {
            let n = num_images.unwrap_or(1);
            let last = u64::from(first) + n as u64 - 1;
            if last > u64::from(u32::MAX) {
                return Err(value_error(
                    &seed,
                    format!(
                        "seed {first} with num_images {n} would use seeds up to {last}; image k uses seed + k, \
                         which must be less than 2^32"
                    ),
                ));
            }
            Ok((0..n as u32).map(|k| Some(first + k)).collect())
        }
        Some(SeedSpec::List(seeds)) => {
            if seeds.is_empty() {
                return Err(FieldError::at(
                    &seed,
                    "List should have at least 1 item after validation, not 0",
                    "too_short",
                ));
            }
            if seeds.len() > MAX_IMAGES {
                return Err(FieldError::at(
                    &seed,
                    format!(
                        "List should have at most {MAX_IMAGES} items after validation, not {}",
                        seeds.len()
                    ),
                    "too_long",
                ));
            }
            if let Some(n) = num_images
                && n != seeds.len()
            {
                return Err(value_error(
                    &seed,
                    format!(
                        "seed lists {} seeds but num_images is {n}; send one seed per image (or no num_images)",
                        seeds.len()
                    ),
                ));
            }
            Ok(seeds)
        }
    }
}
