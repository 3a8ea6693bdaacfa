//! `--shard I/N`: one of N processes rendering one input, each the lines whose id hashes to its
//! index. The hash (FNV-1a of the id, or of the line number for a line without one) is the same
//! on every machine and every run, so reruns and resumes agree on who owns a line, and a repeated
//! id stays with one shard, which sees it repeated. `--shard auto` reads the index from the job
//! array the process runs in: Slurm's `SLURM_ARRAY_TASK_ID` (less `SLURM_ARRAY_TASK_MIN`) and
//! `SLURM_ARRAY_TASK_COUNT`, or a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` with the count
//! from `--shards N`.

use std::fmt;
use std::str::FromStr;

use super::assets::fnv1a;

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 0.
    pub index: usize,
    /// How many shards in all.
    pub count: usize,
}

impl Shard {
    /// A shard, checked: `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, String> {
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index must be below the count (0 to {})",
                count.max(1) - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether the line with id `id` is this shard's.
    pub fn owns(&self, id: &str) -> bool {
        (fnv1a(id.as_bytes()) % self.count as u64) as usize == self.index
    }

    /// The shard's output folder inside `--out`: `shard-I-of-N`.
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// The shard of this process in a Slurm job array or a Kubernetes Indexed Job; `count` is
    /// `--shards` (required for Kubernetes, checked against Slurm's count when given).
    pub fn from_env(count: Option<usize>) -> Result<Shard, String> {
        Shard::from_vars(|name| std::env::var(name).ok(), count)
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>, count: Option<usize>) -> Result<Shard, String> {
        let number = |name: &str| -> Result<Option<usize>, String> {
            var(name)
                .map(|v| v.trim().parse::<usize>().map_err(|_| format!("{name}={v:?} is not a number")))
                .transpose()
        };
        if let Some(task) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let slurm_count = number("SLURM_ARRAY_TASK_COUNT")?;
            let count = match (count, slurm_count) {
                (Some(given), Some(slurm)) if given != slurm => {
                    return Err(format!("--shards {given} but SLURM_ARRAY_TASK_COUNT={slurm}"));
                }
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => return Err("SLURM_ARRAY_TASK_COUNT is not set: pass --shards N".into()),
            };
            let index = task.checked_sub(min).ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?;
            return Shard::new(index, count);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count.ok_or("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): pass --shards N, the Job's completions")?;
            return Shard::new(index, count);
        }
        Err("--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set".into())
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N`.
    fn from_str(s: &str) -> Result<Shard, String> {
        let parsed =
            s.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        let (index, count) =
            parsed.ok_or_else(|| format!("{s:?} is not a shard such as 0/4 (index/count)"))?;
        Shard::new(index, count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_id_has_exactly_one_shard_and_shards_are_about_even() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
        let mut sizes = [0usize; 3];
        for n in 0..3000 {
            let id = format!("request-{n}");
            let owners: Vec<usize> = shards.iter().filter(|s| s.owns(&id)).map(|s| s.index).collect();
            assert_eq!(owners.len(), 1, "{id}: {owners:?}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (850..1150).contains(&n)), "{sizes:?}");
    }

    #[test]
    fn shards_parse_and_bad_ones_say_why() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1/0", "a/3", "3", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard::new(1, 4).unwrap().dir_name(), "shard-1-of-4");
    }

    #[test]
    fn job_arrays_give_the_shard() {
        let vars = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            move |name: &str| map.get(name).cloned()
        };
        let slurm = vars(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(Shard::from_vars(&slurm, None), Ok(Shard { index: 2, count: 4 }));
        assert!(Shard::from_vars(&slurm, Some(5)).is_err(), "a --shards that disagrees with Slurm");
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "0")]);
        assert_eq!(Shard::from_vars(&k8s, Some(2)), Ok(Shard { index: 0, count: 2 }));
        assert!(Shard::from_vars(&k8s, None).unwrap_err().contains("--shards"));
        assert!(Shard::from_vars(vars(&[]), Some(2)).is_err());
        assert!(Shard::from_vars(vars(&[("JOB_COMPLETION_INDEX", "x")]), Some(2)).is_err());
    }
}
