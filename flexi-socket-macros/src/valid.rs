//! Checks of a parsed handler. Every error points at the user's token and says
//! what to write instead; all problems are reported at once.

use quote::quote;
use syn::{Error, GenericParam, Pat, PathArguments, Result, Type};

use crate::attr::{ClientTypeValue, Handler, Input, Kind, peel};

/// Collects errors so that one compile shows every problem.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Checks that `handler` can be registered for its event.
pub(crate) fn handler(handler: &Handler) -> Result<()> {
    let mut errors = Errors::default();
    client_type(handler, &mut errors);
    signature(handler, &mut errors);
    for input in handler.inputs() {
        argument(handler.kind, &input, &mut errors);
    }
    errors.finish()
}

fn client_type(handler: &Handler, errors: &mut Errors) {
    let Some(arg) = &handler.args.client_type else {
        return;
    };
    if handler.kind == Kind::Connect {
        errors.push(Error::new(
            arg.key.span(),
            "#[on_connect] runs before the connection is classified, so it cannot take a client type; remove `client_type`",
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for value in &arg.values {
        if let ClientTypeValue::Key(key) = value
            && key.value().is_empty()
        {
            errors.push(Error::new(
                    key.span(),
                    "empty client type; write the key the classifier produces, e.g. `client_type = \"001\"`, or remove `client_type` to handle every client type",
                ));
        }
        // Spelled the same twice: the registration would clash with itself.
        let spelled = value.spelled();
        if seen.contains(&spelled) {
            let message = format!("{spelled} is already listed; remove this one");
            errors.push(match value {
                ClientTypeValue::Key(key) => Error::new(key.span(), message),
                ClientTypeValue::Variant(path) => Error::new_spanned(path, message),
            });
        }
        seen.push(spelled);
    }
}

fn signature(handler: &Handler, errors: &mut Errors) {
    let sig = &handler.item.sig;
    let attribute = handler.kind.attribute();
    if let Some(constness) = &sig.constness {
        errors.push(Error::new(
            constness.span,
            "remove `const`: handlers are plain `async fn`",
        ));
    }
    if sig.asyncness.is_none() {
        errors.push(Error::new(
            sig.fn_token.span,
            format!("#[{attribute}] needs an `async fn`; add `async` before `fn`"),
        ));
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        errors.push(Error::new(
            unsafety.span,
            "remove `unsafe`: handlers are called from safe code; use an `unsafe` block inside instead",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            "remove the `extern` ABI: handlers are Rust functions",
        ));
    }
    let generic = sig
        .generics
        .params
        .iter()
        .any(|param| !matches!(param, GenericParam::Lifetime(_)));
    if generic {
        errors.push(Error::new_spanned(
            &sig.generics,
            "handlers cannot be generic: the attribute registers one concrete function; remove the type and const parameters and use concrete types",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(
            variadic,
            "handlers cannot be variadic; remove `...`",
        ));
    }
}

fn argument(kind: Kind, input: &Input<'_>, errors: &mut Errors) {
    let (pat, ty) = match *input {
        Input::Receiver(receiver) => {
            errors.push(Error::new_spanned(
                receiver,
                "handlers are free functions, not methods; remove `self` and move the function out of the `impl` block",
            ));
            return;
        }
        Input::Borrowed { reference, .. } if reference.mutability.is_some() => {
            let (and, mutability) = (&reference.and_token, &reference.mutability);
            errors.push(Error::new_spanned(
                quote!(#and #mutability),
                "handlers cannot borrow the event mutably; take `&T` or an owned value instead of `&mut T`",
            ));
            return;
        }
        Input::Owned { pat, ty } | Input::Borrowed { pat, ty, .. } => (pat, ty),
    };
    let peeled = match peel(ty) {
        Type::Reference(reference) => peel(&reference.elem),
        ty => ty,
    };
    if let Type::ImplTrait(impl_trait) = peeled {
        errors.push(Error::new_spanned(
            impl_trait,
            "an `impl Trait` argument makes the handler generic; use a concrete type such as `String` or `Connection`",
        ));
    }
    let wrong_event = if !kind.has_message() && is_message(ty) {
        format!("{} has no message", kind.attribute())
    } else if kind != Kind::Error && is_named(peeled, "Error") {
        "only #[on_error] receives an `Error`".to_owned()
    } else if kind != Kind::Disconnect && is_named(peeled, "DisconnectReason") {
        "only #[on_disconnect] receives a `DisconnectReason`".to_owned()
    } else {
        return;
    };
    let remove = match pat {
        Pat::Ident(ident) => format!("remove `{}`", ident.ident),
        _ => "remove this argument".to_owned(),
    };
    errors.push(Error::new_spanned(
        quote!(#pat: #ty),
        format!("{wrong_event}; {remove}"),
    ));
}

/// Whether `ty` is a path ending in `name` (e.g. `flexi_socket::Error`): types are
/// not resolved yet, so the last segment is all there is to go on.
pub(crate) fn is_named(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| last.ident == name))
}

/// Whether `ty` is one of the message views: `String`, `&str`, `Bytes`, `Vec<u8>`,
/// `&[u8]` or `Message` (judged by the last path segment, as types are not resolved yet).
pub(crate) fn is_message(ty: &Type) -> bool {
    match peel(ty) {
        Type::Reference(reference) => match peel(&reference.elem) {
            Type::Path(path) => path.qself.is_none() && path.path.is_ident("str"),
            Type::Slice(slice) => is_u8(&slice.elem),
            _ => false,
        },
        Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else {
                return false;
            };
            match last.ident.to_string().as_str() {
                "String" | "Bytes" | "Message" => last.arguments.is_none(),
                "Vec" => match &last.arguments {
                    PathArguments::AngleBracketed(args) => {
                        args.args.len() == 1
                            && matches!(args.args.first(), Some(syn::GenericArgument::Type(elem)) if is_u8(elem))
                    }
                    _ => false,
                },
                _ => false,
            }
        }
        _ => false,
    }
}

fn is_u8(ty: &Type) -> bool {
    matches!(peel(ty), Type::Path(path) if path.qself.is_none() && path.path.is_ident("u8"))
}
