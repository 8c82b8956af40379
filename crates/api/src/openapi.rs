//! The OpenAPI 3.1 document, generated from the handlers' annotations and types (utoipa), served
//! at `/api/v1/openapi.json` and rendered by the embedded Swagger UI at `/api/docs`.
//!
//! The error answers every operation can give (problem+json) are added here once rather than on
//! each handler, so the document and the code cannot disagree about them. A route added to the
//! router must be added to `paths(...)` below; a test checks the two lists match.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, PROBLEM_JSON, Problem};
use crate::routes::{
    alerts, audit, auth, beers, channels, commands, devices, kegs, locations, reports, taps, users,
};

const DESCRIPTION: &str = "\
Scale Sense REST API: taps, kegs, beers, scales, alerts and users of one customer account.

**Authentication.** Dashboard users log in with `POST /api/v1/auth/login`; the answer sets an \
`HttpOnly; SameSite=Lax` session cookie (`scalesense_session`, an opaque random token stored \
only as its SHA-256 hash, valid 12 hours, revoked by `POST /api/v1/auth/logout`) and returns a \
`csrf_token`. Every cookie-authenticated request that is not GET/HEAD/OPTIONS must send that \
value as `X-CSRF-Token`, or it is refused with `403` (type `urn:scalesense:problem:csrf`). \
Integrations use API tokens instead: `Authorization: Bearer sst_…`, created by an admin with \
`POST /api/v1/tokens` (the secret is shown once, stored hashed, revocable, with a role no higher \
than its creator's); bearer requests need no CSRF token. Failed logins are throttled per e-mail \
and per client address (`429` with `Retry-After`), and an unknown user gets the same `401` as a \
wrong password.

**Roles.** staff < manager < admin, as in the permission matrix: everyone views taps, tares, \
identifies and puts scales into maintenance, and acknowledges alerts; managers also assign beers \
and kegs, manage beers and kegs, read reports, change settings, calibrate, reconfigure and \
reboot scales, and move scales between taps; admins also register scales, manage users and \
API tokens, and read the audit log. A user may be limited to some locations.

**Errors** are `application/problem+json` (RFC 9457) with a stable `type` \
(`urn:scalesense:problem:<slug>`), a human `detail`, and `errors[]` with the fields at fault \
for `422`. A resource of another account, or of a location the caller may not see, is `404`, \
exactly like one that does not exist; a role too low is `403`; missing, expired or revoked \
credentials are `401`. Writes reject unknown fields; bodies are limited to 64 KiB.

**Ids** are the seeds': `loc-001`, taps `loc-001#TAP#07` (send `#` as `%23` in a path), \
`SCALE-0042`, `keg-20260318-007`. Lists are paginated with `limit` and an opaque `cursor` \
(`next_cursor` of the previous page); the tap list carries an `ETag` and honours \
`If-None-Match`. Quantities carry their unit in the field name (`volume_l`, `volume_gal`, \
`weight_kg`, `weight_lbs`) next to the location's `units`; instants are RFC 3339 UTC.

**Reports and exports** (managers): `GET /api/v1/locations/{id}/reports/…` answer in the \
location's time zone and units. `GET /api/v1/locations/{id}/inventory/export?format=csv|pdf` \
makes the file and answers with a signed download link (`/api/v1/downloads/…`, valid 15 \
minutes, no credentials needed; an expired or altered link is `403`); files are removed after \
24 hours.";

#[derive(OpenApi)]
#[openapi(
    info(title = "Scale Sense API", description = DESCRIPTION),
    paths(
        auth::login, auth::logout, auth::me,
        locations::list, locations::get_one, locations::settings, locations::update_settings,
        locations::inventory_export,
        reports::inventory, reports::pour_by_hour, reports::styles, reports::lifespans,
        reports::kicked, reports::battery, reports::download,
        taps::list, taps::get_one, taps::update, taps::history, taps::report,
        commands::issue, commands::get_one,
        beers::search, beers::get_one, beers::create, beers::update,
        kegs::create, kegs::get_one, kegs::update, kegs::list, kegs::readings,
        devices::register, devices::get_one, devices::update, devices::telemetry,
        devices::calibration, devices::calibrate, devices::list,
        alerts::active, alerts::history, alerts::acknowledge,
        channels::list, channels::create, channels::update, channels::remove, channels::test,
        channels::deliveries,
        users::list, users::create, users::get_one, users::update, users::revoke_sessions,
        users::list_tokens, users::create_token, users::revoke_token,
        audit::list,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&Extras),
    security(("bearer_token" = []), ("session_cookie" = [])),
)]
struct ApiDoc;

/// Security schemes and the common error answers.
struct Extras;

/// `(status, description, only for authenticated operations)`.
const COMMON_ERRORS: [(&str, &str, bool); 11] = [
    ("400", "Malformed request (not JSON)", false),
    (
        "401",
        "No credentials, or unknown, expired or revoked ones",
        true,
    ),
    (
        "403",
        "The caller's role may not do this, or the CSRF token is missing",
        true,
    ),
    ("404", "Not found, or not the caller's to see", false),
    ("409", "The write collides with the current state", false),
    ("413", "Body larger than the limit", false),
    ("415", "Body is not application/json", false),
    ("422", "A field is invalid; `errors` names it", false),
    ("429", "Too many failed logins", false),
    ("500", "Internal error", false),
    ("503", "The database is unavailable; retry later", false),
];

fn is_public(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|reqs| {
        reqs.iter()
            .all(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
    })
}

fn add_errors(op: &mut Operation, write: bool) {
    let public = is_public(op);
    for (status, description, authenticated_only) in COMMON_ERRORS {
        if authenticated_only && public {
            continue;
        }
        if status == "409" && !write {
            continue;
        }
        if status == "429" && !public {
            continue;
        }
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            PROBLEM_JSON,
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

impl Modify for Extras {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token, `sst_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "Session from POST /api/v1/auth/login; writes also need X-CSRF-Token",
            ))),
        );
        for item in openapi.paths.paths.values_mut() {
            if let Some(op) = &mut item.get {
                add_errors(op, false);
            }
            for op in [
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                add_errors(op, true);
            }
        }
    }
}

/// The document served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_with_security_and_errors() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["components"]["securitySchemes"]["bearer_token"].is_object());
        let taps = &doc["paths"]["/api/v1/locations/{id}/taps"]["get"];
        assert!(taps["responses"]["200"].is_object());
        assert_eq!(
            taps["responses"]["401"]["content"][PROBLEM_JSON]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        let login = &doc["paths"]["/api/v1/auth/login"]["post"];
        assert!(login["responses"]["403"].is_null(), "login is public");
        assert!(login["responses"]["429"].is_object());
        assert!(
            doc["info"]["description"]
                .as_str()
                .unwrap()
                .contains("inventory/export")
        );
    }
}
