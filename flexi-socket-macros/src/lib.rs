//! Procedural macros of [flexi-socket](https://docs.rs/flexi-socket). Use them
//! through the `flexi-socket` crate, which re-exports them; the code they generate
//! names everything through `::flexi_socket::__private`.
//!
//! Each attribute goes through three phases: `attr` parses the arguments and the
//! function into typed views, `valid` checks them with errors on the user's tokens,
//! and `expand` generates the registration. On bad input the function is emitted
//! unchanged next to the errors, so nothing else fails because of it.
//!
//! # Client types
//!
//! Every handler attribute but `#[on_connect]` (which runs before the
//! connection is classified) takes an optional `client_type`: the handler
//! then serves connections of that type only, in place of the default
//! handler (the one without `client_type`) for them. It is written as
//!
//! - a key: `#[on_message(client_type = "001")]`;
//! - a classifier variant: `#[on_message(client_type = Panel::Alarm)]`;
//! - several of either, joined with `|` as in a `match` pattern:
//!   `#[on_message(client_type = "002" | "003")]`, which registers the one
//!   handler for each type listed.
//!
//! The Python library's positional `on_message("001")` is an error that
//! says to write `client_type = "001"`.
//!
//! # Scopes
//!
//! Every handler attribute takes an optional `scope = "uplink"`: the handler
//! then belongs to the servers and clients built with
//! `.handler_scope("uplink")` and to no other. Handlers without a scope serve
//! every server and client that names none, so a program with one server
//! (or one client) needs no scopes; one with a server and a client gives the
//! client's handlers a scope, or each runs the other's.

mod attr;
mod classifier;
mod expand;
mod valid;

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};

use crate::attr::{Handler, Kind};

/// Runs `async fn` when a connection opens, before it is classified (so it takes
/// no `client_type`).
///
/// ```ignore
/// #[on_connect]
/// async fn hello(conn: Connection) { /* ... */ }
/// ```
#[proc_macro_attribute]
pub fn on_connect(args: TokenStream, item: TokenStream) -> TokenStream {
    handler(Kind::Connect, args, item)
}

/// Runs `async fn` once when a connection ends, whatever ended it.
///
/// Takes an optional `client_type = "001"`, `client_type = Enum::Variant`, or
/// several joined with `|` (`client_type = "002" | "003"`).
#[proc_macro_attribute]
pub fn on_disconnect(args: TokenStream, item: TokenStream) -> TokenStream {
    handler(Kind::Disconnect, args, item)
}

/// Handles each inbound message (after `after_receive`).
///
/// Takes an optional `client_type = "001"`, `client_type = Enum::Variant`, or
/// several joined with `|` (`client_type = "002" | "003"`); the
/// message is taken as `String`, `&str`, `Bytes`, `Vec<u8>`, `&[u8]` or `Message`.
///
/// ```ignore
/// #[on_message(client_type = "001")]
/// async fn alarm(conn: Connection, msg: &str) -> flexi_socket::Result<()> {
///     conn.send("ACK").await
/// }
/// ```
#[proc_macro_attribute]
pub fn on_message(args: TokenStream, item: TokenStream) -> TokenStream {
    handler(Kind::Message, args, item)
}

/// Rewrites or drops each inbound message before `on_message`: return the
/// message to pass on, or `None` to drop it.
///
/// Takes an optional `client_type = "001"`, `client_type = Enum::Variant`, or
/// several joined with `|` (`client_type = "002" | "003"`).
#[proc_macro_attribute]
pub fn after_receive(args: TokenStream, item: TokenStream) -> TokenStream {
    handler(Kind::AfterReceive, args, item)
}

/// Rewrites or drops each outbound message: what it returns goes on the wire.
///
/// Takes an optional `client_type = "001"`, `client_type = Enum::Variant`, or
/// several joined with `|` (`client_type = "002" | "003"`).
#[proc_macro_attribute]
pub fn before_send(args: TokenStream, item: TokenStream) -> TokenStream {
    handler(Kind::BeforeSend, args, item)
}

/// Is told about problems on a connection (take them as an `Error` argument).
///
/// Takes an optional `client_type = "001"`, `client_type = Enum::Variant`, or
/// several joined with `|` (`client_type = "002" | "003"`).
#[proc_macro_attribute]
pub fn on_error(args: TokenStream, item: TokenStream) -> TokenStream {
    handler(Kind::Error, args, item)
}

/// Implements `Classifier` for a fieldless enum from its variants' attributes.
///
/// `#[client_type = "001"]` sets a variant's key (default: its name);
/// `#[classify(prefix = "!!", suffix = "..", contains = "..", exact = "..")]` lists
/// rules, any of which selects the variant (strings or byte strings, checked in
/// declaration order); `#[classify(default)]` marks the one variant taken when no
/// rule matches. A variant whose every rule an earlier variant's rule already
/// covers (e.g. `prefix = "fr"` after `prefix = "f"`) is rejected as unreachable.
///
/// `classify_early` is generated too: on the first bytes of an unfinished
/// frame, a `prefix` or `contains` rule they match decides its variant, `prefix`
/// and `exact` rules they can no longer match are passed over (the default is
/// decided once all are), and a `suffix` or `contains` rule that may still
/// match leaves the type undecided.
///
/// ```ignore
/// #[derive(Classifier)]
/// enum Panel {
///     #[client_type = "001"]
///     #[classify(prefix = "!!", prefix = b"\x02")]
///     Alarm,
///     #[classify(default)]
///     Other,
/// }
/// ```
#[proc_macro_derive(Classifier, attributes(client_type, classify))]
pub fn derive_classifier(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    classifier::derive(&input).into()
}

fn handler(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let generated = Handler::parse(kind, args.into(), item.clone()).and_then(|handler| {
        valid::handler(&handler)?;
        Ok(expand::handler(&handler))
    });
    let generated = generated.unwrap_or_else(syn::Error::into_compile_error);
    quote!(#item #generated).into()
}

/// The one place that names the runtime: everything generated goes through it.
pub(crate) fn private(span: Span) -> proc_macro2::TokenStream {
    quote_spanned!(span=> ::flexi_socket::__private)
}
