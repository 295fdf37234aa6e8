//! `triage schema`: a JSON Schema of the catalogue format, for editors that check TOML against
//! a schema (taplo, VS Code's Even Better TOML).
//!
//! The schema is written by hand here, beside the loader it describes. It cannot drift from
//! the loader unnoticed: the tests (tests/schema.rs) ask the loader itself which fields every
//! table accepts (its "unknown field …, expected one of …" message) and require the schema to
//! name exactly those, and they hold the schema against every catalogue in the repository and
//! against invalid ones. The schema says what can be said without reading the ticket text:
//! field names, types, required fields, id and tag shapes, number ranges. What only the loader
//! can tell (a `@set` that names no set, a regex that does not compile, a phrase that
//! normalises to nothing, duplicate ids) is left to `triage check`.

use serde_json::{json, Value};

/// The `$id` of the schema.
pub const SCHEMA_ID: &str = "urn:triage:catalogue-schema:1";

/// A list of phrases (or `@set` names) as authors write them.
fn phrases(description: &str) -> Value {
    json!({
        "type": "array",
        "description": description,
        "items": { "type": "string", "pattern": "\\S" }
    })
}

/// Text that must not be blank.
fn text(description: &str) -> Value {
    json!({ "type": "string", "pattern": "\\S", "description": description })
}

/// The JSON Schema (draft-07) of one catalogue file.
pub fn catalogue_schema() -> Value {
    let kebab = "^[a-z0-9]+(-[a-z0-9]+)*$";
    let group = json!({
        "description": "A phrase, an @set, or a list of both: one of them must be in the sentence.",
        "oneOf": [
            { "type": "string", "pattern": "\\S" },
            { "type": "array", "minItems": 1, "items": { "type": "string", "pattern": "\\S" } }
        ]
    });
    let symptom = json!({
        "type": "object",
        "description": "One symptom: the evidence that finds it, and what the agent should read.",
        "additionalProperties": false,
        "required": ["id", "title", "checks", "fix"],
        "properties": {
            "id": {
                "type": "string", "pattern": kebab,
                "description": "Stable kebab-case id, unique across catalogues: tags, metrics and evaluations use it."
            },
            "title": text("Human title."),
            "tags": {
                "type": "array", "minItems": 1,
                "description": "Tags to put on the ticket (default: [id]).",
                "items": { "type": "string", "pattern": "^[^\\s,]+$" }
            },
            "threshold": {
                "type": "number", "exclusiveMinimum": 0,
                "description": "Score needed to report the symptom (default 1)."
            },
            "requires": phrases("Topic words: one must appear in the ticket (not negated), or the symptom is not considered."),
            "keywords": phrases("Phrases that identify the symptom on their own (score 1 each)."),
            "hints": phrases("Phrases that point to it but need company (score 0.5 each)."),
            "patterns": {
                "type": "array",
                "description": "Regular expressions (Rust regex syntax) over the normalised text (score 1 each).",
                "items": { "type": "string", "minLength": 1 }
            },
            "together": {
                "type": "array",
                "description": "Co-occurrence rules: every group must have a hit in one sentence (or within `within` characters).",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["all"],
                    "properties": {
                        "all": { "type": "array", "minItems": 2, "items": group },
                        "weight": {
                            "type": "number", "exclusiveMinimum": 0,
                            "description": "Score when all groups meet (default 1)."
                        },
                        "within": {
                            "type": "integer", "minimum": 10, "maximum": 2000,
                            "description": "Characters the groups may span across sentences."
                        }
                    }
                }
            },
            "exclude": phrases("Evidence in the same sentence as one of these (100 characters either side) does not count."),
            "unless": phrases("Any of these in the ticket's own words and the symptom is not reported."),
            "overrides": {
                "type": "array",
                "description": "Ids of symptoms this one hides when both are found (unless they score higher).",
                "items": { "type": "string", "pattern": kebab }
            },
            "checks": {
                "type": "array", "minItems": 1,
                "description": "The first checks, in order, as the agent should read them.",
                "items": { "type": "string", "pattern": "\\S" }
            },
            "fix": text("The likely fix."),
            "reply": {
                "type": "string",
                "description": "Reply template: {title} {id} {checks} {fix} {evidence} {catalogue} {version}; {{ and }} are literal braces."
            },
            "public_reply": {
                "type": "boolean",
                "description": "Ask for a public reply (the sink's configuration must allow it too)."
            }
        },
        "anyOf": [
            { "required": ["keywords"], "properties": { "keywords": { "minItems": 1 } } },
            { "required": ["hints"], "properties": { "hints": { "minItems": 1 } } },
            { "required": ["patterns"], "properties": { "patterns": { "minItems": 1 } } },
            { "required": ["together"], "properties": { "together": { "minItems": 1 } } }
        ]
    });
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "triage symptom catalogue",
        "description": "One catalogue file of patterns/ (see patterns/README.md). `triage check` reports what a schema cannot tell: unknown @sets, regexes that do not compile, duplicate ids.",
        "type": "object",
        "additionalProperties": false,
        "required": ["catalogue"],
        "properties": {
            "catalogue": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "version"],
                "properties": {
                    "name": text("The catalogue's name, reported with every decision."),
                    "version": text("The catalogue's version, reported with every decision."),
                    "description": { "type": "string", "description": "What the catalogue covers." }
                }
            },
            "settings": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "ignore": phrases("A match inside one of these phrases does not count."),
                    "negations": phrases("Extra negation words."),
                    "keep_words": phrases("Words never typo-corrected."),
                    "reply": { "type": "string", "description": "Default reply template for symptoms without their own." },
                    "relative_threshold": {
                        "type": "number", "minimum": 0, "exclusiveMaximum": 1,
                        "description": "Drop a weak finding scoring under this fraction of the best one."
                    },
                    "resolved": phrases("Evidence near these (\"works now\") does not count."),
                    "near_domain": phrases("A neighbouring domain: evidence in its sentence does not count."),
                    "shorthand": {
                        "type": "object",
                        "description": "Help-desk shorthand: one word as tickets write it = the words it stands for.",
                        "additionalProperties": { "type": "string", "pattern": "\\S" }
                    }
                }
            },
            "terms": {
                "type": "object",
                "description": "Named phrase lists, used as \"@name\".",
                "propertyNames": { "pattern": "^([a-z0-9]+(-[a-z0-9]+)*|[a-z_]+)$" },
                "additionalProperties": {
                    "type": "array", "minItems": 1,
                    "items": { "type": "string", "pattern": "^\\s*[^@\\s]" }
                }
            },
            "term_labels": {
                "type": "object",
                "description": "What each term set means, in words, for the evidence the agent reads (\"security key + locked, within 60 characters\"); keys are names of [terms] sets.",
                "additionalProperties": { "type": "string", "pattern": "^[^\\n]*\\S[^\\n]*$" }
            },
            "symptom": { "type": "array", "items": symptom }
        }
    })
}
