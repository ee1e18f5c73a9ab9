//! One rendering choice for every listing: a listing is a serde-derived value, and the table,
//! the JSON and the YAML are three renderings of it (`-o table|json|yaml`; `--json` is `-o
//! json`). The JSON is compact, one document per command (one per line for `monitor`).

use serde::Serialize;

use crate::Error;

/// `-o`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// `value` as `format` asks: the table from `table`, else serde's.
pub fn render<T: Serialize + ?Sized>(
    value: &T,
    format: Format,
    table: impl FnOnce(&T) -> String,
) -> Result<String, Error> {
    match format {
        Format::Table => Ok(table(value)),
        Format::Json => json(value),
        Format::Yaml => {
            serde_yaml::to_string(value).map_err(|e| Error::Output { format: "YAML", source: Box::new(e) })
        }
    }
}

/// `value` as one line of JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Output { format: "JSON", source: Box::new(e) })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        name: String,
        count: Option<u32>,
    }

    #[test]
    fn three_renderings_of_one_value() {
        let rows = vec![Row { name: "a\"b".into(), count: None }, Row { name: "c".into(), count: Some(2) }];
        let table = |rows: &Vec<Row>| format!("{} rows\n", rows.len());
        assert_eq!(render(&rows, Format::Table, table).unwrap(), "2 rows\n");
        let json = render(&rows, Format::Json, table).unwrap();
        assert_eq!(json, r#"[{"name":"a\"b","count":null},{"name":"c","count":2}]"#);
        assert_eq!(serde_json::from_str::<Vec<Row>>(&json).unwrap(), rows);
        let yaml = render(&rows, Format::Yaml, table).unwrap();
        assert_eq!(serde_yaml::from_str::<Vec<Row>>(&yaml).unwrap(), rows);
    }
}
