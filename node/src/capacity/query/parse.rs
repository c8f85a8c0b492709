//! Text → [`Query`].

use super::{Clause, FIELDS, Field, MAX_CLAUSES, MAX_QUERY_LEN, Op, Query, QueryError, Value};
use crate::capacity::units::{parse_count, parse_duration, parse_price_eur, parse_size};

fn field_list() -> String {
    FIELDS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn error(input: &str, message: String, position: usize, len: usize) -> QueryError {
    QueryError {
        message,
        position,
        len: len.max(1),
        input: input.to_owned(),
    }
}

/// Splits on whitespace outside double quotes: (byte offset, token).
fn tokens(input: &str) -> Result<Vec<(usize, &str)>, QueryError> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<usize> = None;
    for (i, c) in input.char_indices() {
        if c == '"' {
            quote = if quote.is_some() { None } else { Some(i) };
            start.get_or_insert(i);
        } else if c.is_whitespace() && quote.is_none() {
            if let Some(s) = start.take() {
                out.push((s, &input[s..i]));
            }
        } else {
            start.get_or_insert(i);
        }
    }
    if let Some(q) = quote {
        return Err(error(input, "unterminated quote".into(), q, 1));
    }
    if let Some(s) = start {
        out.push((s, &input[s..]));
    }
    Ok(out)
}

const OPS: [(&str, Op); 7] = [
    ("!=", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("=", Op::Eq),
    ("<", Op::Lt),
    (">", Op::Gt),
    ("~", Op::Like),
];

/// Parses a query. The empty query matches every host.
pub fn parse(input: &str) -> Result<Query, QueryError> {
    if input.len() > MAX_QUERY_LEN {
        return Err(error(
            input,
            format!("query longer than {MAX_QUERY_LEN} bytes"),
            0,
            1,
        ));
    }
    let toks = tokens(input)?;
    if toks.len() > MAX_CLAUSES {
        let (pos, tok) = toks[MAX_CLAUSES];
        return Err(error(
            input,
            format!("more than {MAX_CLAUSES} clauses"),
            pos,
            tok.len(),
        ));
    }
    let mut clauses = Vec::with_capacity(toks.len());
    for (pos, tok) in toks {
        clauses.push(clause(input, pos, tok)?);
    }
    Ok(Query { clauses })
}

fn clause(input: &str, pos: usize, tok: &str) -> Result<Clause, QueryError> {
    let name_end = tok
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .unwrap_or(tok.len());
    let name = &tok[..name_end];
    if name.is_empty() {
        return Err(error(
            input,
            format!("expected a field name (fields: {})", field_list()),
            pos,
            tok.len(),
        ));
    }
    let field = FIELDS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            error(
                input,
                format!("unknown field `{name}` (fields: {})", field_list()),
                pos,
                name.len(),
            )
        })?;
    let rest = &tok[name_end..];
    let op_pos = pos + name_end;
    let (op_text, op) = OPS
        .iter()
        .find(|(t, _)| rest.starts_with(t))
        .copied()
        .ok_or_else(|| {
            error(
                input,
                format!("expected an operator after `{name}` (=, !=, <, <=, >, >=, ~)"),
                op_pos,
                rest.chars().next().map_or(1, char::len_utf8),
            )
        })?;
    let allowed = if field.is_text() {
        matches!(op, Op::Eq | Op::Ne | Op::Like)
    } else {
        op != Op::Like
    };
    if !allowed {
        let kinds = if field.is_text() {
            "=, != or ~"
        } else {
            "=, !=, <, <=, > or >="
        };
        return Err(error(
            input,
            format!("`{op_text}` does not apply to `{name}`; use {kinds}"),
            op_pos,
            op_text.len(),
        ));
    }
    let raw = &rest[op_text.len()..];
    let value_pos = op_pos + op_text.len();
    let unquoted = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    if unquoted.is_empty() {
        return Err(error(
            input,
            format!("missing value after `{name}{op_text}`"),
            value_pos,
            1,
        ));
    }
    let bad = |e: String| {
        error(
            input,
            format!("bad value for `{name}`: {e}"),
            value_pos,
            raw.len(),
        )
    };
    let value = match field {
        f if f.is_text() => {
            let lower = unquoted.to_lowercase();
            let glob = op == Op::Like && lower.contains(['*', '?']);
            Value::Text { lower, glob }
        }
        Field::Cpu | Field::GpuCount | Field::Bandwidth => {
            Value::Num(parse_count(unquoted).map_err(|e| bad(e.to_string()))?)
        }
        Field::Mem | Field::Disk | Field::GpuMem => {
            Value::Num(parse_size(unquoted).map_err(|e| bad(e.to_string()))? as f64)
        }
        Field::PriceCpu | Field::PriceMem | Field::PriceDisk | Field::PriceGpu => {
            Value::Num(parse_price_eur(unquoted).map_err(|e| bad(e.to_string()))? as f64)
        }
        Field::Ingress => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return Err(error(
                    input,
                    format!("`{name}` is true or false: compare it with = or !="),
                    value_pos,
                    raw.len(),
                ));
            }
            match unquoted.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Value::Num(1.0),
                "false" | "no" | "0" => Value::Num(0.0),
                _ => return Err(bad("expected true or false".into())),
            }
        }
        _ => Value::Num(parse_duration(unquoted).map_err(|e| bad(e.to_string()))? as f64),
    };
    Ok(Clause {
        field,
        op,
        value,
        text: tok.to_owned(),
    })
}
