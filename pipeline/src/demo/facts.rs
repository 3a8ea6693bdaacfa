//! What checking a request needs of the demo model, read from its embedded configs, so that a
//! dry run need not make the model.

use kiln_runtime::checkpoint::Family;
use serde_json::Value;

use super::weights;
use crate::models::ModelFacts;
use crate::samplers::SchedulerConfig;

/// The demo model's family.
pub const DEMO_FAMILY: Family = Family::SdxlBase;

/// The demo model's facts: its family and the depth of its (tiny) text encoders.
pub fn demo_facts() -> ModelFacts {
    let layers = ["text_encoder/config.json", "text_encoder_2/config.json"].map(|path| {
        let json: Value = serde_json::from_str(embedded(path)).expect("the demo's configs are JSON");
        json["num_hidden_layers"].as_u64().expect("the demo's text encoders give their depth") as usize
    });
    ModelFacts { family: DEMO_FAMILY, text_layers: layers[0].min(layers[1]), defaults: Default::default() }
}

/// The demo model's scheduler configuration.
pub fn demo_scheduler() -> SchedulerConfig {
    SchedulerConfig::from_json(embedded("scheduler/scheduler_config.json"))
        .expect("the demo's scheduler configuration reads")
}

/// The embedded config at `path` inside the demo folder.
fn embedded(path: &str) -> &'static str {
    let files = weights::config_files();
    files.iter().find(|(p, _)| *p == path).map(|(_, text)| *text).expect("an embedded demo config")
}

#[cfg(test)]
mod tests {
    use kiln_runtime::checkpoint::Checkpoint;

    use super::*;

    #[test]
    fn the_embedded_facts_are_the_made_models() {
        let cache = tempfile::tempdir().unwrap();
        let demo = super::super::ensure_demo_model(cache.path()).unwrap();
        let checkpoint = Checkpoint::open(&demo).unwrap();
        assert_eq!(checkpoint.family(), DEMO_FAMILY);
        assert_eq!(demo_facts(), ModelFacts::read(&demo).unwrap());
        assert_eq!(demo_scheduler(), SchedulerConfig::for_checkpoint(&checkpoint, &demo).unwrap());
    }
}
