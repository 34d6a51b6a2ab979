//! Parsing: attribute arguments and the handler's signature into typed views.
//!
//! Only syntax is judged here; whether a well-formed handler makes sense for its
//! event is `valid.rs`'s job.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};
use syn::{
    Error, FnArg, Ident, Item, ItemFn, LitStr, Pat, Path, Receiver, Result, Token, Type,
    TypeReference,
};

/// The event an attribute is for; mirrors the runtime's `HandlerKind`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Connect,
    Disconnect,
    Message,
    AfterReceive,
    BeforeSend,
    Error,
}

impl Kind {
    /// The attribute's name, as the user wrote it.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Kind::Connect => "on_connect",
            Kind::Disconnect => "on_disconnect",
            Kind::Message => "on_message",
            Kind::AfterReceive => "after_receive",
            Kind::BeforeSend => "before_send",
            Kind::Error => "on_error",
        }
    }

    /// The runtime's `HandlerKind` variant.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Kind::Connect => "Connect",
            Kind::Disconnect => "Disconnect",
            Kind::Message => "Message",
            Kind::AfterReceive => "AfterReceive",
            Kind::BeforeSend => "BeforeSend",
            Kind::Error => "Error",
        }
    }

    /// Whether the event carries a message a handler can take.
    pub(crate) fn has_message(self) -> bool {
        matches!(self, Kind::Message | Kind::AfterReceive | Kind::BeforeSend)
    }

    /// Filters pass a message on (or drop it) instead of just handling it.
    pub(crate) fn is_filter(self) -> bool {
        matches!(self, Kind::AfterReceive | Kind::BeforeSend)
    }
}

/// `client_type = ...` as written: one client type, or several joined by
/// `|` as in a `match` pattern (`client_type = "002" | "003"`).
pub(crate) struct ClientTypeArg {
    /// The `client_type` key, for errors about the argument as a whole.
    pub(crate) key: Ident,
    /// At least one.
    pub(crate) values: Vec<ClientTypeValue>,
}

pub(crate) enum ClientTypeValue {
    /// `client_type = "001"`
    Key(LitStr),
    /// `client_type = Panel::Alarm`
    Variant(Path),
}

/// The attribute's arguments.
pub(crate) struct Args {
    pub(crate) client_type: Option<ClientTypeArg>,
    /// `blocking`: run on tokio's blocking pool.
    pub(crate) blocking: bool,
    /// `scope = "uplink"`: the handler belongs to the servers and clients
    /// built with `.handler_scope("uplink")`, not to the others.
    pub(crate) scope: Option<LitStr>,
}

impl Args {
    fn parse(kind: Kind, tokens: TokenStream) -> Result<Self> {
        let parser = |input: ParseStream| {
            let mut args = Args {
                client_type: None,
                blocking: false,
                scope: None,
            };
            while !input.is_empty() {
                if input.peek(LitStr) {
                    return Err(positional_client_types(kind, input));
                }
                let key: Ident = input.parse()?;
                if key == "blocking" {
                    if args.blocking {
                        return Err(Error::new(
                            key.span(),
                            "duplicate `blocking`; remove this one",
                        ));
                    }
                    args.blocking = true;
                    if !input.is_empty() {
                        input.parse::<Token![,]>()?;
                    }
                    continue;
                }
                if key == "scope" {
                    input.parse::<Token![=]>()?;
                    let scope: LitStr = input.parse().map_err(|_| {
                        Error::new(
                            key.span(),
                            "`scope` takes a name in quotes, e.g. `scope = \"uplink\"`",
                        )
                    })?;
                    if args.scope.is_some() {
                        return Err(Error::new(
                            key.span(),
                            "duplicate `scope`: a handler belongs to one scope",
                        ));
                    }
                    if scope.value().is_empty() {
                        return Err(Error::new(scope.span(), "a scope needs a name"));
                    }
                    args.scope = Some(scope);
                    if !input.is_empty() {
                        input.parse::<Token![,]>()?;
                    }
                    continue;
                }
                if key != "client_type" {
                    return Err(unknown_argument(kind, &key));
                }
                input.parse::<Token![=]>()?;
                let mut values = vec![ClientTypeValue::parse(input)?];
                while input.peek(Token![|]) {
                    input.parse::<Token![|]>()?;
                    values.push(ClientTypeValue::parse(input)?);
                }
                if let Some(first) = &args.client_type {
                    let joined = spelled_list(first.values.iter().chain(&values));
                    return Err(Error::new(
                        key.span(),
                        format!(
                            "duplicate `client_type`; to serve several client types, join \
                             them with `|` in one: `client_type = {joined}`"
                        ),
                    ));
                }
                args.client_type = Some(ClientTypeArg { key, values });
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
            }
            Ok(args)
        };
        parser.parse2(tokens)
    }
}

impl ClientTypeValue {
    /// As the user would write it in the attribute: `"001"`, `Panel::Alarm`.
    pub(crate) fn spelled(&self) -> String {
        match self {
            ClientTypeValue::Key(key) => format!("{:?}", key.value()),
            ClientTypeValue::Variant(path) => quote::quote!(#path).to_string().replace(' ', ""),
        }
    }

    fn parse(input: ParseStream) -> Result<Self> {
        if input.peek(LitStr) {
            Ok(ClientTypeValue::Key(input.parse()?))
        } else if input.peek(Ident)
            || input.peek(Token![::])
            || input.peek(Token![crate])
            || input.peek(Token![self])
            || input.peek(Token![super])
        {
            Ok(ClientTypeValue::Variant(input.call(Path::parse_mod_style)?))
        } else {
            Err(input.error(
                "expected a client type: a string like `\"001\"` or a classifier variant like `Panel::Alarm`",
            ))
        }
    }
}

/// `#[on_message("002", "003")]`, the Python library's spelling: the error
/// covers the strings and spells the attribute as it is written here.
fn positional_client_types(kind: Kind, input: ParseStream) -> Error {
    let mut keys: Vec<LitStr> = Vec::new();
    while let Ok(key) = input.parse::<LitStr>() {
        keys.push(key);
        if input.parse::<Token![,]>().is_err() || !input.peek(LitStr) {
            break;
        }
    }
    let values: Vec<_> = keys.iter().cloned().map(ClientTypeValue::Key).collect();
    let written = spelled_list(values.iter());
    let message = if kind == Kind::Connect {
        "#[on_connect] runs before the connection is classified, so it cannot take a client \
         type; remove it"
            .to_owned()
    } else {
        format!("name the client type: write `client_type = {written}`")
    };
    Error::new_spanned(quote::quote!(#(#keys)*), message)
}

/// Client types as one `client_type = ...` would list them.
fn spelled_list<'a>(values: impl Iterator<Item = &'a ClientTypeValue>) -> String {
    values
        .map(ClientTypeValue::spelled)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn unknown_argument(kind: Kind, key: &Ident) -> Error {
    let message = if kind == Kind::Connect {
        format!("unknown argument `{key}`: #[on_connect] takes only `scope` and `blocking`")
    } else {
        format!(
            "unknown argument `{key}`: #[{}] takes `client_type` (e.g. `client_type = \"001\"`, `client_type = Panel::Alarm`, or several: `client_type = \"002\" | \"003\"`), `scope` (e.g. `scope = \"uplink\"`) and `blocking`",
            kind.attribute(),
        )
    };
    Error::new(key.span(), message)
}

/// One parameter of the handler.
pub(crate) enum Input<'a> {
    /// `self` in any form; validation rejects it.
    Receiver(&'a Receiver),
    /// `pat: T`, taken with `FromEvent`.
    Owned { pat: &'a Pat, ty: &'a Type },
    /// `pat: &T`, borrowed from the value `BorrowedArg` names.
    Borrowed {
        pat: &'a Pat,
        ty: &'a Type,
        reference: &'a TypeReference,
    },
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(arg: &'a FnArg) -> Self {
        match arg {
            FnArg::Receiver(receiver) => Input::Receiver(receiver),
            FnArg::Typed(typed) => match peel(&typed.ty) {
                Type::Reference(reference) => Input::Borrowed {
                    pat: &typed.pat,
                    ty: &typed.ty,
                    reference,
                },
                _ => Input::Owned {
                    pat: &typed.pat,
                    ty: &typed.ty,
                },
            },
        }
    }
}

/// A type without the invisible groups `macro_rules!` wraps around `$t:ty` and
/// without parentheses.
pub(crate) fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// A handler attribute and the function it is on.
pub(crate) struct Handler {
    pub(crate) kind: Kind,
    pub(crate) args: Args,
    pub(crate) item: ItemFn,
}

impl Handler {
    /// Parses `#[kind(args)] item`.
    pub(crate) fn parse(kind: Kind, args: TokenStream, item: TokenStream) -> Result<Self> {
        let item = match syn::parse2::<Item>(item)? {
            Item::Fn(item) => item,
            other => {
                return Err(Error::new_spanned(
                    other,
                    format!(
                        "#[{}] goes on a free `async fn`, e.g. `async fn handler(conn: Connection)`",
                        kind.attribute(),
                    ),
                ));
            }
        };
        Ok(Handler {
            kind,
            args: Args::parse(kind, args)?,
            item,
        })
    }

    /// The parameters, in order.
    pub(crate) fn inputs(&self) -> impl Iterator<Item = Input<'_>> {
        self.item.sig.inputs.iter().map(Input::from_syn)
    }
}
