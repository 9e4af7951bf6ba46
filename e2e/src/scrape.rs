//! Reads the provider's HTTP side doors as kubelet and Prometheus do: a GET on loopback, and
//! a parser for the OpenMetrics text that `/metrics` answers.

use std::collections::BTreeMap;
use std::time::Duration;

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`, or empty.
    pub content_type: String,
    /// Body as text.
    pub body: String,
}

/// GETs `http://127.0.0.1:<port><path>`, never through a proxy; `Err` when nothing answers.
pub async fn get(port: u16, path: &str) -> Result<Answer, String> {
    // reqwest wants a TLS provider even for plain http; Err means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .map_err(|e| format!("GET {path} on port {port}: {e}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// One sample line: `name{label="value",...} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as exposed (`_total`, `_bucket` and so on included).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Every sample of an exposition.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Parses OpenMetrics or Prometheus text. Panics on a line it cannot read, so that a
    /// malformed exposition fails the test that scraped it.
    pub fn parse(text: &str) -> Samples {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_line(line).unwrap_or_else(|| panic!("unreadable line {line:?}")))
            .collect();
        Samples(samples)
    }

    /// The value of the series `name` with exactly `labels`, or 0 when it is absent (a
    /// counter that never moved is not exposed).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map_or(0.0, |s| s.value)
    }

    /// The samples named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, labels)) = series.split_once('{') else {
        return Some(Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
            value,
        });
    };
    let mut parsed = BTreeMap::new();
    let mut rest = labels.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let end = after.find('"')?;
        parsed.insert(key.to_owned(), after[..end].to_owned());
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(Sample {
        name: name.to_owned(),
        labels: parsed,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# TYPE a counter\na_total{x=\"1\",y=\"two\"} 3\nb 0.5\n# EOF\n";
        let samples = Samples::parse(text);
        assert_eq!(samples.value("a_total", &[("x", "1"), ("y", "two")]), 3.0);
        assert_eq!(samples.value("a_total", &[("x", "1")]), 0.0);
        assert_eq!(samples.value("b", &[]), 0.5);
    }
}
