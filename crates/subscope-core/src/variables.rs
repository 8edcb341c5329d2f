//! Variable coercion checks async-graphql leaves to execution time.
//!
//! A required variable that is missing (or null) is a request error by the GraphQL spec
//! ("CoerceVariableValues"), like a syntax or validation error: the operation gets one
//! `error` message and never starts. async-graphql instead resolves the field and reports
//! "Variable n is not defined." as a field error inside `data: null`, which would reach
//! the client as `next` then `complete`. Wrongly typed values are already request errors
//! there, so only presence is checked here.

use async_graphql::parser::Positioned;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
};
use async_graphql::{Name, Request, ServerError, Value};

use crate::documents::Documents;
use crate::gauges::OperationKind;

/// What the one parse of a request found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// The coercion errors of the request's required variables, or none.
    pub(crate) missing: Vec<ServerError>,
    /// The selected operation's kind, when the document parses and selects one. Only a
    /// subscription may share an execution: a query or mutation always runs by itself.
    pub(crate) kind: Option<OperationKind>,
}

/// Checks `request`'s required variables and finds its operation type. A document that
/// does not parse, or names no operation unambiguously, is left to async-graphql, which
/// reports it properly. The parsed document is handed to the request, so async-graphql
/// does not parse it again.
pub(crate) fn check(request: &mut Request, documents: &Documents) -> Checked {
    let Some(document) = documents.parse(&request.query) else {
        return Checked::default();
    };
    let checked = match select(&document.operations, request.operation_name.as_deref()) {
        Some(operation) => Checked {
            missing: missing_in(operation, request),
            kind: Some(match operation.node.ty {
                OperationType::Query => OperationKind::Query,
                OperationType::Mutation => OperationKind::Mutation,
                OperationType::Subscription => OperationKind::Subscription,
            }),
        },
        None => Checked::default(),
    };
    // A copy of the cached tree: far cheaper than parsing the text again.
    request.set_parsed_query(ExecutableDocument::clone(&document));
    checked
}

fn missing_in(operation: &Positioned<OperationDefinition>, request: &Request) -> Vec<ServerError> {
    operation
        .node
        .variable_definitions
        .iter()
        .filter(|def| {
            let def = &def.node;
            let required = !def.var_type.node.nullable && def.default_value.is_none();
            let given = request
                .variables
                .get(&Name::new(def.name.node.as_str()))
                .is_some_and(|v| *v != Value::Null);
            required && !given
        })
        .map(|def| {
            ServerError::new(
                format!(
                    "Variable \"${}\" of required type \"{}\" was not provided.",
                    def.node.name.node, def.node.var_type.node
                ),
                Some(def.pos),
            )
        })
        .collect()
}

fn select<'a>(
    operations: &'a DocumentOperations,
    name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (operations, name) {
        (DocumentOperations::Single(op), None) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(&Name::new(name)),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    }
}

#[cfg(feature = "http")]
/// The type of the operation `request` selects, if its document parses and names one.
pub(crate) fn operation_type(request: &Request, documents: &Documents) -> Option<OperationType> {
    let document = documents.parse(&request.query)?;
    select(&document.operations, request.operation_name.as_deref()).map(|op| op.node.ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_documents() -> Documents {
        Documents::new(16, std::sync::Arc::new(crate::Gauges::new()))
    }

    fn errors(query: &str, variables: serde_json::Value) -> Vec<String> {
        let mut request =
            Request::new(query).variables(async_graphql::Variables::from_json(variables));
        check(&mut request, &test_documents())
            .missing
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn a_missing_or_null_required_variable_is_reported() {
        let q = "subscription S($n: Int!) { ticks(count: $n) }";
        let want = [r#"Variable "$n" of required type "Int!" was not provided."#];
        assert_eq!(errors(q, serde_json::json!({})), want);
        assert_eq!(errors(q, serde_json::json!({"n": null})), want);
        assert!(errors(q, serde_json::json!({"n": 3})).is_empty());
    }

    #[test]
    fn optional_defaulted_and_unparsable_are_left_alone() {
        let none = serde_json::json!({});
        assert!(errors("subscription S($n: Int) { ticks(count: $n) }", none.clone()).is_empty());
        assert!(errors("query Q($n: Int! = 3) { hello }", none.clone()).is_empty());
        assert!(errors("subscription {", none.clone()).is_empty());
        // Two operations and no name: async-graphql reports the ambiguity itself.
        assert!(errors("query A($a: Int!) { a } query B { b }", none).is_empty());
    }

    #[test]
    fn only_subscriptions_are_marked_shareable() {
        let kind = |q: &str, name: Option<&str>| {
            let mut request = Request::new(q);
            if let Some(n) = name {
                request = request.operation_name(n);
            }
            check(&mut request, &test_documents()).kind == Some(OperationKind::Subscription)
        };
        assert!(kind("subscription { ticks }", None));
        assert!(!kind("{ hello }", None));
        assert!(!kind(
            "mutation { publish(topic: \"t\", message: \"m\") }",
            None
        ));
        assert!(kind("query A { a } subscription B { b }", Some("B")));
        assert!(!kind("query A { a } subscription B { b }", Some("A")));
        assert!(!kind("subscription {", None), "unparsable: never shared");
    }

    #[test]
    fn the_named_operation_is_the_one_checked() {
        let q = "query A($a: Int!) { a } query B($b: String!) { b }";
        let mut request = Request::new(q).operation_name("B");
        let errs = check(&mut request, &test_documents()).missing;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("$b"), "{}", errs[0].message);
        assert_eq!(errs[0].locations.len(), 1);
    }
}
