//! The committed contract matches the code, and documents every response.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{OpenApi, RefOr, Response};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");

#[test]
fn committed_openapi_yaml_matches_the_code() {
    let committed =
        std::fs::read_to_string(COMMITTED).unwrap_or_else(|e| panic!("reading {COMMITTED}: {e}"));
    let generated = api::openapi::spec_yaml().unwrap();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "openapi.yaml is out of date with the code (first difference at line {}: \
             committed {:?}, generated {:?}).\n\
             Regenerate it from the workspace root with:\n\n    \
             cargo run -p api -- openapi > openapi.yaml\n",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            generated.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

fn operations(item: &PathItem) -> Vec<(String, &Operation)> {
    let named = [
        ("get", &item.get),
        ("put", &item.put),
        ("post", &item.post),
        ("delete", &item.delete),
        ("options", &item.options),
        ("head", &item.head),
        ("patch", &item.patch),
        ("trace", &item.trace),
        ("query", &item.query),
    ];
    named
        .into_iter()
        .filter_map(|(method, op)| op.as_ref().map(|op| (method.to_owned(), op)))
        .chain(
            item.additional_operations
                .iter()
                .map(|(method, op)| (method.clone(), op)),
        )
        .collect()
}

/// The response itself, following a `$ref` into the components.
fn resolve<'a>(spec: &'a OpenApi, response: &'a RefOr<Response>) -> Option<&'a Response> {
    match response {
        RefOr::T(r) => Some(r),
        RefOr::Ref(r) => {
            let name = r.ref_location.strip_prefix("#/components/responses/")?;
            let target = spec.components.as_ref()?.responses.get(name)?;
            resolve(spec, target)
        }
    }
}

#[test]
fn every_operation_documents_a_response() {
    let spec = api::openapi::spec();
    assert!(
        [
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.yaml",
            "/v1/assets"
        ]
        .iter()
        .all(|p| spec.paths.paths.contains_key(*p)),
        "the spec is missing documented routes: {:?}",
        spec.paths.paths.keys().collect::<Vec<_>>()
    );
    let mut problems = Vec::new();
    let mut count = 0;
    for (path, item) in &spec.paths.paths {
        let ops = operations(item);
        if ops.is_empty() {
            problems.push(format!("{path}: no operation"));
        }
        for (method, op) in ops {
            count += 1;
            let described = op
                .responses
                .responses
                .values()
                .filter_map(|r| resolve(&spec, r))
                .any(|r| !r.description.trim().is_empty());
            if !described {
                problems.push(format!(
                    "{} {path}: no response with a description",
                    method.to_uppercase()
                ));
            }
        }
    }
    assert!(count > 0, "the spec has no operations");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
