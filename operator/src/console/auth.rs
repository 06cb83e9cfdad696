//! Who may act from the console: the person's own Kubernetes identity, never a shared
//! password. The page sends the person's bearer token (what `kubectl` uses: a service-account
//! token, an OIDC id token, a static token); the apiserver says whose it is (a TokenReview)
//! and whether that user may `patch` the StreamJob (a SubjectAccessReview), exactly the right
//! `kubectl patch` or `kubectl edit` would need to ask for the same change. The operator then
//! makes the change with its own rights, and records who asked in an event.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

/// A person the apiserver vouched for and allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Kubernetes user name, e.g. `alice@example.com` or
    /// `system:serviceaccount:shop:deployer`.
    pub user: String,
}

/// Why an action was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token, or one the apiserver does not recognise (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// A known user without the right (403).
    #[error("{0}")]
    Forbidden(String),
    /// The apiserver could not be asked (503): refused, never let through.
    #[error("{0}")]
    Unavailable(String),
}

/// The bearer token of an `Authorization` header value, if it carries one.
#[must_use]
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let v = header?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks that the holder of `token` may `verb` the StreamJob `ns/name`.
///
/// # Errors
/// [`Refusal`]: unauthenticated, forbidden, or the apiserver could not answer.
pub async fn authorize(
    client: &Client,
    token: Option<&str>,
    verb: &str,
    ns: &str,
    name: &str,
) -> Result<Caller, Refusal> {
    let Some(token) = token else {
        return Err(Refusal::Unauthenticated(
            "no bearer token: paste a Kubernetes token (e.g. `kubectl create token <service account>`) \
             into the console"
                .into(),
        ));
    };
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            Refusal::Unavailable(format!("the apiserver did not review the token: {e}"))
        })?;
    let status = reviewed.status.unwrap_or_default();
    let user = status.user.unwrap_or_default();
    let Some(username) = user
        .username
        .clone()
        .filter(|_| status.authenticated == Some(true))
    else {
        let why = status.error.unwrap_or_else(|| "not recognised".into());
        return Err(Refusal::Unauthenticated(format!(
            "the apiserver does not accept this token: {why}"
        )));
    };
    let extra: Option<BTreeMap<String, Vec<String>>> = user.extra;
    let access = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(username.clone()),
            groups: user.groups,
            uid: user.uid,
            extra,
            resource_attributes: Some(ResourceAttributes {
                group: Some("weir.dev".into()),
                resource: Some("streamjobs".into()),
                verb: Some(verb.into()),
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answered = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &access)
        .await
        .map_err(|e| {
            Refusal::Unavailable(format!(
                "the apiserver did not answer the access review: {e}"
            ))
        })?;
    let allowed = answered.status.as_ref().is_some_and(|s| s.allowed);
    if allowed {
        Ok(Caller { user: username })
    } else {
        let reason = answered
            .status
            .and_then(|s| s.reason)
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        Err(Refusal::Forbidden(format!(
            "{username} may not {verb} streamjobs.weir.dev {ns}/{name}{reason}"
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};

    /// An apiserver that answers the TokenReview with `review` and the SubjectAccessReview
    /// with `access` (a status code and body each), and hands back what it was sent.
    fn apiserver(
        review: (u16, Value),
        access: (u16, Value),
    ) -> (Client, tokio::task::JoinHandle<Vec<(String, Value)>>) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let path = req.uri().path().to_string();
                let body = req.into_body().collect_bytes().await.unwrap();
                seen.push((path.clone(), serde_json::from_slice(&body).unwrap()));
                let (code, answer) = if path.ends_with("/tokenreviews") {
                    review.clone()
                } else {
                    access.clone()
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(answer.to_string().into_bytes()))
                        .unwrap(),
                );
            }
            seen
        });
        (Client::new(svc, "default"), seen)
    }

    fn reviewed(user: &str) -> (u16, Value) {
        (
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                   "status": {"authenticated": true,
                              "user": {"username": user, "uid": "u-1", "groups": ["devs", "system:authenticated"]}}}),
        )
    }

    fn access(allowed: bool) -> (u16, Value) {
        (
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
                   "status": {"allowed": allowed, "reason": if allowed { "" } else { "no RBAC policy matched" }}}),
        )
    }

    fn failure(code: u16) -> (u16, Value) {
        (
            code,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd is down", "code": code}),
        )
    }

    #[tokio::test]
    async fn a_person_allowed_to_patch_the_job_may_act_and_the_review_asks_exactly_that() {
        let (client, seen) = apiserver(reviewed("alice"), access(true));
        let caller = authorize(&client, Some("tok"), "patch", "shop", "sales").await;
        drop(client);
        assert_eq!(
            caller,
            Ok(Caller {
                user: "alice".into()
            })
        );
        let seen = seen.await.unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].1["spec"]["token"], "tok");
        let sar = &seen[1].1["spec"];
        assert_eq!(sar["user"], "alice");
        assert_eq!(sar["groups"], json!(["devs", "system:authenticated"]));
        assert_eq!(
            sar["resourceAttributes"],
            json!({"group": "weir.dev", "resource": "streamjobs", "verb": "patch",
                   "namespace": "shop", "name": "sales"})
        );
    }

    #[tokio::test]
    async fn refusals_name_why_and_an_unanswered_review_refuses() {
        // No token: refused before asking anyone.
        let (client, seen) = apiserver(reviewed("alice"), access(true));
        let r = authorize(&client, None, "patch", "shop", "sales").await;
        drop(client);
        assert!(matches!(r, Err(Refusal::Unauthenticated(_))), "{r:?}");
        assert!(seen.await.unwrap().is_empty());

        // A token the apiserver does not know.
        let unknown = (
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                   "status": {"authenticated": false, "error": "invalid bearer token"}}),
        );
        let (client, _) = apiserver(unknown, access(true));
        let r = authorize(&client, Some("tok"), "patch", "shop", "sales").await;
        assert!(
            matches!(&r, Err(Refusal::Unauthenticated(m)) if m.contains("invalid bearer token")),
            "{r:?}"
        );

        // A known person without the right.
        let (client, _) = apiserver(reviewed("mallory"), access(false));
        let r = authorize(&client, Some("tok"), "patch", "shop", "sales").await;
        assert!(
            matches!(&r, Err(Refusal::Forbidden(m)) if m.contains("mallory may not patch") && m.contains("shop/sales")),
            "{r:?}"
        );

        // The apiserver cannot answer either review: refused, never allowed.
        for (review, sar) in [
            (failure(500), access(true)),
            (reviewed("alice"), failure(503)),
        ] {
            let (client, _) = apiserver(review, sar);
            let r = authorize(&client, Some("tok"), "patch", "shop", "sales").await;
            assert!(matches!(r, Err(Refusal::Unavailable(_))), "{r:?}");
        }
    }

    #[test]
    fn only_a_bearer_header_carries_a_token() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic YWxpY2U6cHc=")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("abc")), None);
        assert_eq!(bearer(None), None);
    }
}
