//! Code generation for the handler attributes: an erased call, an optional
//! client type, and an `inventory` registration, all inside `const _: () = { ... };`
//! so the user's function stays untouched and nothing leaks into their namespace.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{LitStr, ReturnType, Type};

use crate::attr::{ClientTypeValue, Handler, Input};
use crate::{private, valid};

/// A span that resolves like the macro's own tokens but is reported at `at`, so
/// trait errors in generated code land on the user's line.
fn at(at: Span) -> Span {
    Span::call_site().located_at(at)
}

/// Whether the first of `inputs` may take its part of the event (the
/// connection, or the message) instead of copying it: when no argument after
/// it reads that part. That is so for the last argument, for a `Connection`
/// followed only by message views, and for a message view followed only by
/// `Connection`s; anything else (a type the runtime does not know, `State`)
/// copies, which is always right, only slower by a reference count.
fn takes_its_part(inputs: &[Input<'_>]) -> bool {
    fn ty<'a>(input: &Input<'a>) -> Option<&'a Type> {
        match input {
            Input::Owned { ty, .. } | Input::Borrowed { ty, .. } => Some(*ty),
            Input::Receiver(_) => None,
        }
    }
    let Some((first, later)) = inputs.split_first() else {
        return false;
    };
    let Some(first) = ty(first) else {
        return false;
    };
    let later = || later.iter().map(ty);
    if valid::is_named(first, "Connection") {
        later().all(|ty| ty.is_some_and(valid::is_message))
    } else if valid::is_message(first) {
        later().all(|ty| ty.is_some_and(|ty| valid::is_named(ty, "Connection")))
    } else {
        later().next().is_none()
    }
}

/// The items registering `handler`; its function itself is emitted by the caller.
pub(crate) fn handler(handler: &Handler) -> TokenStream {
    let runtime = private(Span::call_site());
    let sig = &handler.item.sig;
    let ident = &sig.ident;

    // Arguments are taken from the event before the handler's future is
    // boxed, so the box holds them and the handler's future, not the event.
    let inputs: Vec<Input<'_>> = handler
        .inputs()
        .filter(|input| !matches!(input, Input::Receiver(_)))
        .collect();
    let mut bindings = Vec::new();
    let mut call_args = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let binding = format_ident!("__arg{index}");
        let take = takes_its_part(&inputs[index..]);
        let (ty, owned, call_arg) = match input {
            // Rejected by validation; nothing is generated for a rejected handler.
            Input::Receiver(_) => continue,
            Input::Owned { ty, .. } => {
                let runtime = private(at(ty.span()));
                let owned = quote_spanned!(at(ty.span())=> <#ty as #runtime::FromEvent>);
                (ty, owned, quote!(#binding))
            }
            Input::Borrowed { ty, reference, .. } => {
                let runtime = private(at(ty.span()));
                let elem = &reference.elem;
                let owned = quote_spanned!(at(ty.span())=>
                    <<#elem as #runtime::BorrowedArg>::Owned as #runtime::FromEvent>
                );
                (ty, owned, quote!(&*#binding))
            }
        };
        let extracted = if take {
            quote_spanned!(at(ty.span())=> #owned::take_from_event(__ctx))
        } else {
            quote_spanned!(at(ty.span())=> #owned::from_event(__ctx))
        };
        bindings.push(quote! {
            let #binding = match #extracted {
                #runtime::Ok(value) => value,
                #runtime::Err(error) => return #runtime::rejected(error),
            };
        });
        call_args.push(call_arg);
    }
    // Only name the context if it is used: an unused name would warn.
    let context = if inputs.is_empty() {
        quote!(_: &mut #runtime::EventContext)
    } else {
        quote!(__ctx: &mut #runtime::EventContext)
    };

    // The Send check is reported at the handler's name ("future returned by `x` is
    // not `Send`"); its `impl Send` result keeps the boxing below from failing twice.
    // The function is taken as a value rather than called by name: handlers must be
    // `async`, so clippy's `unused_async` should not suggest otherwise.
    let send_span = at(ident.span());
    let handler_value = quote_spanned!(send_span=> let __handler = #ident;);
    let future = quote_spanned!(send_span=> __flexi_send(__handler(#(#call_args),*)));

    let return_span = match &sig.output {
        ReturnType::Type(_, ty) => at(ty.span()),
        ReturnType::Default => send_span,
    };
    let convert = {
        let runtime = private(return_span);
        if handler.kind.is_filter() {
            quote_spanned!(return_span=> #runtime::IntoFiltered::into_filtered(__ret))
        } else {
            quote_spanned!(return_span=> #runtime::IntoHandlerResult::into_handler_result(__ret))
        }
    };

    // The call starts the handler's future in the slot and polls it once
    // (most handlers finish there). With owned arguments only, the handler's
    // own future goes into the slot as it is, its output converted on the way
    // out; a borrowed argument must live beside the future that borrows it,
    // in an async block.
    let borrows = inputs
        .iter()
        .any(|input| matches!(input, Input::Borrowed { .. }));
    let run = if borrows {
        quote! {
            #handler_value
            __slot.run(async move {
                let __ret = #future.await;
                #convert
            }, __cx)
        }
    } else {
        // Spanned like the call: a handler whose future is not `Send` is
        // then reported once, at its name, not again at the attribute.
        let runtime = private(send_span);
        quote_spanned! {send_span=>
            #handler_value
            __slot.run(#runtime::MapOutput::new(#future, |__ret| #convert), __cx)
        }
    };

    let blocking = handler.args.blocking;
    let scope = match &handler.args.scope {
        Some(scope) => quote!(#runtime::Some(#scope)),
        None => quote!(#runtime::None),
    };
    let kind = format_ident!("{}", handler.kind.variant());
    let name = LitStr::new(&ident.unraw().to_string(), ident.span());
    let register = |client_type: TokenStream| {
        quote! {
            #runtime::inventory::submit! {
                #runtime::Registration {
                    kind: #runtime::HandlerKind::#kind,
                    client_type: #client_type,
                    name: ::core::concat!(::core::module_path!(), "::", #name),
                    call: __flexi_call,
                    blocking: #blocking,
                    scope: #scope,
                }
            }
        }
    };
    // One registration per client type, all calling the same function: the
    // router then treats `client_type = "002" | "003"` as two handlers.
    let registrations = match &handler.args.client_type {
        None => register(quote!(#runtime::None)),
        Some(arg) => arg
            .values
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let function = format_ident!("__flexi_client_type_{index}");
                let value = match value {
                    ClientTypeValue::Key(key) => {
                        quote!(#runtime::ClientType::from_static(#key))
                    }
                    ClientTypeValue::Variant(path) => {
                        let runtime = private(at(path.span()));
                        quote_spanned!(at(path.span())=> #runtime::ClientType::of(&#path))
                    }
                };
                let registration = register(quote!(#runtime::Some(#function)));
                quote! {
                    fn #function() -> #runtime::ClientType {
                        #value
                    }
                    #registration
                }
            })
            .collect(),
    };

    quote! {
        const _: () = {
            fn __flexi_send<F>(future: F) -> impl ::core::future::Future<Output = F::Output> + ::core::marker::Send
            where
                F: ::core::future::Future + ::core::marker::Send,
            {
                future
            }

            fn __flexi_call(
                #context,
                __slot: &mut #runtime::HandlerSlot,
                __cx: &mut #runtime::Context<'_>,
            ) -> #runtime::Poll<#runtime::HandlerOutput> {
                #(#bindings)*
                #run
            }

            #registrations
        };
    }
}

#[cfg(test)]
mod tests {
    use syn::ItemFn;

    use super::*;

    /// For each argument of `handler`, whether it takes its part of the event.
    fn takes(handler: &str) -> Vec<bool> {
        let item: ItemFn = syn::parse_str(handler).unwrap();
        let inputs: Vec<Input<'_>> = item.sig.inputs.iter().map(Input::from_syn).collect();
        (0..inputs.len())
            .map(|index| takes_its_part(&inputs[index..]))
            .collect()
    }

    #[test]
    fn an_argument_takes_its_part_only_when_no_later_one_reads_it() {
        assert_eq!(
            takes("async fn f(c: Connection, m: String) {}"),
            [true, true]
        );
        assert_eq!(takes("async fn f(m: &str, c: Connection) {}"), [true, true]);
        assert_eq!(
            takes("async fn f(c: Connection, m: Bytes, r: Vec<u8>) {}"),
            [true, false, true]
        );
        // `State` reads the connection; an unknown type may read anything.
        assert_eq!(
            takes("async fn f(c: Connection, m: Message, s: State<u8>) {}"),
            [false, false, true]
        );
        assert_eq!(takes("async fn f(m: Message, x: Custom) {}"), [false, true]);
        assert_eq!(
            takes("async fn f(x: Custom, c: Connection) {}"),
            [false, true]
        );
    }
}
