//! `#[derive(Classifier)]` on a fieldless enum: parse the variants' `#[client_type]`
//! and `#[classify]` attributes, check them, and generate the impl.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{Data, DeriveInput, Error, Expr, ExprLit, Ident, Lit, LitByteStr, LitStr, Meta, Result};

use crate::private;
use crate::valid::Errors;

/// Expands the derive; on bad input, the errors plus an impl that keeps the rest
/// of the user's crate from failing with "`Classifier` is not implemented".
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let result = Enum::parse(input).and_then(|classifier| {
        classifier.validate()?;
        Ok(classifier.expand())
    });
    match result {
        Ok(tokens) => tokens,
        Err(error) => {
            let error = error.to_compile_error();
            let fallback = fallback(input);
            quote!(#error #fallback)
        }
    }
}

/// The enum as the derive sees it.
struct Enum<'a> {
    input: &'a DeriveInput,
    variants: Vec<Variant<'a>>,
}

struct Variant<'a> {
    original: &'a syn::Variant,
    key: Key,
    rules: Vec<Rule>,
    /// The `default` tokens of `#[classify(default)]`, one per occurrence.
    defaults: Vec<Span>,
}

/// A variant's client type: written as `#[client_type = "001"]` or its name.
struct Key {
    value: String,
    span: Span,
}

struct Rule {
    kind: RuleKind,
    pattern: Vec<u8>,
    /// As written, for spans and messages.
    lit: Lit,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RuleKind {
    Prefix,
    Suffix,
    Contains,
    Exact,
}

impl RuleKind {
    fn from_ident(ident: &Ident) -> Option<Self> {
        Some(match ident.to_string().as_str() {
            "prefix" => RuleKind::Prefix,
            "suffix" => RuleKind::Suffix,
            "contains" => RuleKind::Contains,
            "exact" => RuleKind::Exact,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            RuleKind::Prefix => "prefix",
            RuleKind::Suffix => "suffix",
            RuleKind::Contains => "contains",
            RuleKind::Exact => "exact",
        }
    }
}

impl Rule {
    /// `prefix "!!"`, as the user wrote the pattern.
    fn describe(&self) -> String {
        format!("{} {}", self.kind.name(), self.lit.to_token_stream())
    }

    /// Whether this rule matches every frame `later` matches, so that `later`,
    /// checked after it, can never decide.
    fn covers(&self, later: &Rule) -> bool {
        let (pattern, later_pattern) = (self.pattern.as_slice(), later.pattern.as_slice());
        // An empty pattern is reported on its own; it should not also shadow or be shadowed.
        if pattern.is_empty() || later_pattern.is_empty() {
            return false;
        }
        match (self.kind, later.kind) {
            (RuleKind::Prefix, RuleKind::Prefix | RuleKind::Exact) => {
                later_pattern.starts_with(pattern)
            }
            (RuleKind::Suffix, RuleKind::Suffix | RuleKind::Exact) => {
                later_pattern.ends_with(pattern)
            }
            (RuleKind::Contains, _) => later_pattern
                .windows(pattern.len())
                .any(|window| window == pattern),
            (RuleKind::Exact, RuleKind::Exact) => later_pattern == pattern,
            _ => false,
        }
    }

    /// The test of `first_frame` against this rule.
    fn condition(&self) -> TokenStream {
        let pattern = LitByteStr::new(&self.pattern, self.lit.span());
        match self.kind {
            RuleKind::Prefix => quote!(first_frame.starts_with(#pattern)),
            RuleKind::Suffix => quote!(first_frame.ends_with(#pattern)),
            RuleKind::Exact => quote!(first_frame == #pattern),
            RuleKind::Contains => {
                let len = self.pattern.len();
                quote!(first_frame.windows(#len).any(|window| window == #pattern))
            }
        }
    }
}

/// What the bytes a frame starts with tell about one rule, for the
/// generated `classify_early`.
impl Rule {
    /// The test that the rule matches every frame starting with
    /// `first_bytes`; `None` for rules that need the whole frame to match
    /// (`exact`, `suffix`).
    fn matches_every_frame_from(&self) -> Option<TokenStream> {
        let pattern = LitByteStr::new(&self.pattern, self.lit.span());
        match self.kind {
            RuleKind::Prefix => Some(quote!(first_bytes.starts_with(#pattern))),
            RuleKind::Contains => {
                let len = self.pattern.len();
                Some(quote!(first_bytes.windows(#len).any(|window| window == #pattern)))
            }
            RuleKind::Exact | RuleKind::Suffix => None,
        }
    }

    /// The test that some frame starting with `first_bytes` may still match
    /// (asked once [`matches_every_frame_from`](Self::matches_every_frame_from)
    /// said no); `None` when one always may (`suffix`, `contains`: the rest of
    /// the frame can end with or hold the pattern).
    fn may_match_a_frame_from(&self) -> Option<TokenStream> {
        let pattern = LitByteStr::new(&self.pattern, self.lit.span());
        match self.kind {
            RuleKind::Prefix | RuleKind::Exact => Some(quote!(#pattern.starts_with(first_bytes))),
            RuleKind::Suffix | RuleKind::Contains => None,
        }
    }
}

impl<'a> Enum<'a> {
    fn parse(input: &'a DeriveInput) -> Result<Self> {
        let data = match &input.data {
            Data::Enum(data) => data,
            Data::Struct(data) => return Err(not_an_enum(input, data.struct_token.span)),
            Data::Union(data) => return Err(not_an_enum(input, data.union_token.span)),
        };
        let mut errors = Errors::default();
        let mut variants = Vec::new();
        for variant in &data.variants {
            match Variant::parse(variant) {
                Ok(variant) => variants.push(variant),
                Err(error) => errors.push(error),
            }
        }
        errors.finish()?;
        Ok(Enum { input, variants })
    }
}

fn not_an_enum(input: &DeriveInput, span: Span) -> Error {
    Error::new(
        span,
        format!(
            "#[derive(Classifier)] works on fieldless enums; make `{}` an enum with one variant per client type",
            input.ident,
        ),
    )
}

impl<'a> Variant<'a> {
    fn parse(original: &'a syn::Variant) -> Result<Self> {
        let mut variant = Variant {
            original,
            key: Key {
                value: original.ident.to_string(),
                span: original.ident.span(),
            },
            rules: Vec::new(),
            defaults: Vec::new(),
        };
        let mut written_key = false;
        for attr in &original.attrs {
            if attr.path().is_ident("client_type") {
                if written_key {
                    return Err(Error::new_spanned(
                        attr,
                        "duplicate #[client_type]: a variant has one client type, so remove this one",
                    ));
                }
                variant.key = parse_key(&attr.meta)?;
                written_key = true;
            } else if attr.path().is_ident("classify") {
                variant.parse_classify(attr)?;
            }
        }
        Ok(variant)
    }

    fn parse_classify(&mut self, attr: &syn::Attribute) -> Result<()> {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("default") {
                if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                    return Err(meta.error("write `#[classify(default)]` without a value"));
                }
                self.defaults.push(meta.path.segments[0].ident.span());
                return Ok(());
            }
            let kind = meta.path.get_ident().and_then(RuleKind::from_ident);
            let Some(kind) = kind else {
                let rule = meta.path.to_token_stream().to_string().replace(' ', "");
                return Err(meta.error(format!(
                    "unknown rule `{rule}`; write `prefix`, `suffix`, `contains` or `exact` with a pattern, or `default`",
                )));
            };
            let value: Expr = meta.value()?.parse()?;
            let (pattern, lit) = match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(lit), ..
                }) => (lit.value().into_bytes(), Lit::Str(lit)),
                Expr::Lit(ExprLit {
                    lit: Lit::ByteStr(lit),
                    ..
                }) => (lit.value(), Lit::ByteStr(lit)),
                other => {
                    return Err(Error::new_spanned(
                        other,
                        "expected a pattern: a string literal like `\"!!\"` or a byte string literal like `b\"\\x02\"`",
                    ));
                }
            };
            self.rules.push(Rule { kind, pattern, lit });
            Ok(())
        })
    }

    fn ident(&self) -> &'a Ident {
        &self.original.ident
    }
}

fn parse_key(meta: &Meta) -> Result<Key> {
    if let Meta::NameValue(name_value) = meta
        && let Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) = &name_value.value
    {
        return Ok(Key {
            value: lit.value(),
            span: lit.span(),
        });
    }
    Err(Error::new_spanned(
        meta,
        "expected a client type as a string: `#[client_type = \"001\"]`",
    ))
}

impl Enum<'_> {
    fn validate(&self) -> Result<()> {
        let mut errors = Errors::default();
        let mut keys: HashMap<&str, &Ident> = HashMap::new();
        let mut default: Option<&Ident> = None;
        for (index, variant) in self.variants.iter().enumerate() {
            let ident = variant.ident();
            if !variant.original.fields.is_empty() {
                errors.push(Error::new_spanned(
                    &variant.original.fields,
                    format!("classifier variants carry no data; remove the fields of `{ident}`"),
                ));
            }
            if variant.key.value.is_empty() {
                errors.push(Error::new(
                    variant.key.span,
                    "empty client type; write a key such as `#[client_type = \"001\"]`, or remove the attribute to use the variant's name",
                ));
            }
            match keys.entry(&variant.key.value) {
                Entry::Vacant(entry) => {
                    entry.insert(ident);
                }
                Entry::Occupied(first) => errors.push(Error::new(
                    variant.key.span,
                    format!(
                        "client type {:?} is already `{}`'s; give `{ident}` a different `#[client_type = \"...\"]`",
                        variant.key.value,
                        first.get(),
                    ),
                )),
            }
            for (position, rule) in variant.rules.iter().enumerate() {
                if rule.pattern.is_empty() {
                    errors.push(Error::new_spanned(
                        &rule.lit,
                        "an empty pattern matches every frame; write the bytes to match, or use `#[classify(default)]`",
                    ));
                    continue;
                }
                let same = |first: &&Rule| first.kind == rule.kind && first.pattern == rule.pattern;
                if let Some(first) = variant.rules[..position].iter().find(same) {
                    errors.push(Error::new_spanned(
                        &rule.lit,
                        format!(
                            "duplicate rule: `{ident}` already has {}; remove this one",
                            first.describe(),
                        ),
                    ));
                }
            }
            if let Some(error) = unreachable(&self.variants[..index], variant) {
                errors.push(error);
            }
            for span in &variant.defaults {
                match default {
                    None => default = Some(ident),
                    Some(first) => errors.push(Error::new(
                        *span,
                        format!(
                            "only one variant can be `#[classify(default)]`, and `{first}` already is; remove this `default`",
                        ),
                    )),
                }
            }
            if variant.rules.is_empty() && variant.defaults.is_empty() {
                errors.push(Error::new_spanned(
                    ident,
                    format!(
                        "`{ident}` has no rule, so no frame can select it; add `#[classify(prefix = \"...\")]` (or `suffix`, `contains`, `exact`) or make it the `#[classify(default)]`",
                    ),
                ));
            }
        }
        if default.is_none() {
            errors.push(Error::new_spanned(
                &self.input.ident,
                "no default variant; mark one variant `#[classify(default)]` to take the frames no rule matches",
            ));
        }
        errors.finish()
    }

    fn expand(&self) -> TokenStream {
        let runtime = private(Span::call_site());
        let ident = &self.input.ident;
        let (impl_generics, ty_generics, where_clause) = self.input.generics.split_for_impl();

        // Validation guarantees exactly one default variant.
        let default = self
            .variants
            .iter()
            .find(|variant| !variant.defaults.is_empty())
            .map(Variant::ident);
        let branches = self
            .variants
            .iter()
            .filter(|variant| !variant.rules.is_empty())
            .map(|variant| {
                let ident = variant.ident();
                let conditions = variant.rules.iter().map(Rule::condition);
                quote!(if #(#conditions)||* { Self::#ident })
            })
            .collect::<Vec<_>>();
        let frame = if branches.is_empty() {
            quote!(_)
        } else {
            quote!(first_frame)
        };

        let keys = self
            .variants
            .iter()
            .map(|variant| {
                let key = LitStr::new(&variant.key.value, variant.key.span);
                quote!(#runtime::ClientType::from_static(#key))
            })
            .collect::<Vec<_>>();
        let variants = self.variants.iter().map(Variant::ident);
        let classify_early = self.classify_early(default);

        quote! {
            impl #impl_generics #runtime::Classifier for #ident #ty_generics #where_clause {
                fn classify(#frame: &[u8]) -> Self {
                    #(#branches else)* { Self::#default }
                }

                #classify_early

                fn client_type(&self) -> #runtime::ClientType {
                    match self {
                        #(Self::#variants => #keys,)*
                    }
                }

                fn client_types() -> ::core::option::Option<#runtime::Vec<#runtime::ClientType>> {
                    #runtime::Some(#runtime::Vec::from([#(#keys),*]))
                }
            }
        }
    }
}

impl Enum<'_> {
    /// `classify_early`: the rules in `classify`'s order, each variant in
    /// turn. A variant one of whose rules matches every frame starting with
    /// the bytes is the decision (no earlier variant could match, or the
    /// walk would have stopped); one whose rules may still match some such
    /// frame leaves it undecided; one none of whose rules can match is
    /// passed over; past every variant, the default is the decision. So a
    /// decision is what `classify` gives every frame those bytes start.
    fn classify_early(&self, default: Option<&Ident>) -> TokenStream {
        let runtime = private(Span::call_site());
        // (condition, decision) in order; `None` as the decision is "not yet".
        let mut steps: Vec<(TokenStream, Option<&Ident>)> = Vec::new();
        let mut end = quote!(#runtime::Some(Self::#default));
        for variant in self
            .variants
            .iter()
            .filter(|variant| !variant.rules.is_empty())
        {
            let settles: Vec<_> = variant
                .rules
                .iter()
                .filter_map(Rule::matches_every_frame_from)
                .collect();
            if !settles.is_empty() {
                steps.push((quote!(#(#settles)||*), Some(variant.ident())));
            }
            let may_match: Option<Vec<_>> = variant
                .rules
                .iter()
                .map(Rule::may_match_a_frame_from)
                .collect();
            let Some(may_match) = may_match else {
                // A rule that may always match: nothing later can be decided.
                end = quote!(#runtime::None);
                break;
            };
            match steps.last_mut() {
                // Joined with the step before when that is "not yet" as well.
                Some((condition, None)) => *condition = quote!(#condition || #(#may_match)||*),
                _ => steps.push((quote!(#(#may_match)||*), None)),
            }
        }
        let parameter = if steps.is_empty() {
            quote!(_)
        } else {
            quote!(first_bytes)
        };
        let branches = steps.iter().map(|(condition, decision)| {
            let decision = match decision {
                Some(ident) => quote!(#runtime::Some(Self::#ident)),
                None => quote!(#runtime::None),
            };
            quote!(if #condition { #decision })
        });
        quote! {
            fn classify_early(#parameter: &[u8]) -> ::core::option::Option<Self> {
                #(#branches else)* { #end }
            }
        }
    }
}

/// The error for `variant` when earlier variants take every frame its rules match,
/// reported on its first rule. One live rule keeps the variant reachable, and then
/// its shadowed rules are harmless, so nothing is reported.
fn unreachable(earlier: &[Variant<'_>], variant: &Variant<'_>) -> Option<Error> {
    let mut shadows = variant.rules.iter().map(|rule| {
        earlier.iter().find_map(|earlier| {
            let first = earlier.rules.iter().find(|first| first.covers(rule))?;
            Some((earlier.ident(), first, rule))
        })
    });
    let (earlier, first, rule) = shadows.next()??;
    if !shadows.all(|shadow| shadow.is_some()) {
        return None;
    }
    Some(Error::new_spanned(
        &rule.lit,
        format!(
            "unreachable: `{earlier}` already matches every frame this rule matches ({}); remove this rule, reorder the variants, or change its pattern",
            first.describe(),
        ),
    ))
}

fn fallback(input: &DeriveInput) -> TokenStream {
    let runtime = private(Span::call_site());
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        impl #impl_generics #runtime::Classifier for #ident #ty_generics #where_clause {
            fn classify(_: &[u8]) -> Self {
                ::core::unreachable!("#[derive(Classifier)] failed to compile")
            }

            fn client_type(&self) -> #runtime::ClientType {
                ::core::unreachable!("#[derive(Classifier)] failed to compile")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Rule, RuleKind};
    use proc_macro2::Span;
    use syn::{Lit, LitStr};

    fn rule(kind: RuleKind, pattern: &str) -> Rule {
        Rule {
            kind,
            pattern: pattern.as_bytes().to_vec(),
            lit: Lit::Str(LitStr::new(pattern, Span::call_site())),
        }
    }

    #[test]
    fn covers_exactly_the_rules_it_always_matches_before() {
        use RuleKind::{Contains, Exact, Prefix, Suffix};
        let cases = [
            (Prefix, "f", Prefix, "fr", true),
            (Prefix, "f", Exact, "fig", true),
            (Prefix, "fr", Prefix, "f", false),
            (Prefix, "f", Suffix, "f", false),
            (Prefix, "f", Contains, "f", false),
            (Suffix, "#END", Suffix, "21#END", true),
            (Suffix, "#END", Exact, "a#END", true),
            (Suffix, "#END", Prefix, "#END", false),
            (Contains, "HB", Contains, "xHBx", true),
            (Contains, "HB", Prefix, "HB!", true),
            (Contains, "HB", Suffix, "!HB", true),
            (Contains, "HB", Exact, "HB", true),
            (Contains, "HB", Exact, "H B", false),
            (Exact, "PING", Exact, "PING", true),
            (Exact, "PING", Prefix, "PING", false),
            (Exact, "PING", Exact, "PINGS", false),
            (Prefix, "", Prefix, "f", false),
            (Contains, "f", Contains, "", false),
        ];
        for (kind, pattern, later_kind, later_pattern, expected) in cases {
            let (earlier, later) = (rule(kind, pattern), rule(later_kind, later_pattern));
            assert_eq!(
                earlier.covers(&later),
                expected,
                "{} then {}",
                earlier.describe(),
                later.describe(),
            );
        }
    }
}
