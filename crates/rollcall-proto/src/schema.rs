//! OpenAPI schemas of the wire types, for the documents each service
//! generates from its routes (`utoipa`). The types with hand-written serde
//! (names, URLs, timestamps, the classic registration) describe here what
//! their serde code accepts; the derived ones carry `ToSchema` themselves.

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{KnownFormat, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::names::{ServiceName, ServiceUrl};
use crate::registration::{MAX_REQUIRED_SERVICES, Registration};
use crate::time::Timestamp;

impl PartialSchema for ServiceName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9._-]{1,128}$"))
            .description(Some(
                "A service name: 1 to 128 letters, digits, '.', '_' or '-'",
            ))
            .into()
    }
}
impl ToSchema for ServiceName {}

impl PartialSchema for ServiceUrl {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uri".into())))
            .description(Some("An absolute http(s) URL with a host"))
            .into()
    }
}
impl ToSchema for ServiceUrl {}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339, UTC"))
            .into()
    }
}
impl ToSchema for Timestamp {}

impl PartialSchema for Registration {
    fn schema() -> RefOr<Schema> {
        let optional_url = |what: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .format(Some(SchemaFormat::Custom("uri".into())))
                .description(Some(what.to_owned()))
        };
        ObjectBuilder::new()
            .description(Some(
                "The classic registration. Field names match case-insensitively; \
                 `ServiceUpdatedURL` is an alias of `ServiceUpdateURL`; unknown \
                 fields are ignored; null means absent.",
            ))
            .property("ServiceName", ServiceName::schema())
            .required("ServiceName")
            .property("ServiceURL", ServiceUrl::schema())
            .required("ServiceURL")
            .property(
                "RequiredServices",
                ArrayBuilder::new()
                    .items(ServiceName::schema())
                    .max_items(Some(MAX_REQUIRED_SERVICES))
                    .description(Some("Names whose providers this instance is told about")),
            )
            .property(
                "ServiceUpdateURL",
                optional_url("Where patches are POSTed; empty for none"),
            )
            .property(
                "HeartbeatURL",
                optional_url("What the registry GETs to check health; empty for none"),
            )
            .into()
    }
}
impl ToSchema for Registration {}
