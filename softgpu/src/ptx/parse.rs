//! A recursive-descent parser for the PTX that NVRTC emits: module directives, variables with
//! initialisers, `.entry` and `.func` definitions and prototypes, and function bodies.

use super::ast::*;
use super::lex::{LexError, Tok, Token, tokenize};

/// A parse failure: the line and what was expected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("PTX line {line}: {message}")]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

impl From<LexError> for ParseError {
    fn from(e: LexError) -> Self {
        ParseError { line: e.line, message: e.message }
    }
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses a whole PTX module.
pub fn parse_module(src: &str) -> Result<Module> {
    let tokens = tokenize(src)?;
    let mut p = Parser { t: &tokens, i: 0 };
    p.module()
}

struct Parser<'a> {
    t: &'a [Token],
    i: usize,
}

/// Bytes of a PTX fundamental type (`.b8` … `.f64`, `.pred`).
pub fn type_size(ty: &str) -> Option<u32> {
    Some(match ty.trim_start_matches('.') {
        "b8" | "u8" | "s8" | "pred" => 1,
        "b16" | "u16" | "s16" | "f16" | "bf16" => 2,
        "b32" | "u32" | "s32" | "f32" | "f16x2" | "bf16x2" => 4,
        "b64" | "u64" | "s64" | "f64" => 8,
        "b128" => 16,
        _ => return None,
    })
}

impl<'a> Parser<'a> {
    fn line(&self) -> u32 {
        self.t.get(self.i).or(self.t.last()).map_or(0, |t| t.line)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T> {
        Err(ParseError { line: self.line(), message: message.into() })
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.t.get(self.i).map(|t| &t.kind)
    }

    fn peek_at(&self, k: usize) -> Option<&'a Tok> {
        self.t.get(self.i + k).map(|t| &t.kind)
    }

    fn next(&mut self) -> Result<&'a Tok> {
        let t = self.t.get(self.i).map(|t| &t.kind);
        self.i += 1;
        t.map_or_else(|| self.err("unexpected end of PTX"), Ok)
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.is_punct(c);
        self.i += yes as usize;
        yes
    }

    fn expect_punct(&mut self, c: char) -> Result<()> {
        if self.eat_punct(c) { Ok(()) } else { self.err(format!("expected `{c}`, found {:?}", self.peek())) }
    }

    fn ident(&mut self) -> Result<&'a str> {
        match self.next()? {
            Tok::Ident(s) => Ok(s),
            t => {
                self.i -= 1;
                self.err(format!("expected a name, found {t:?}"))
            }
        }
    }

    fn int(&mut self) -> Result<u64> {
        let neg = self.eat_punct('-');
        match self.next()? {
            Tok::Int(v) => Ok(if neg { v.wrapping_neg() } else { *v }),
            t => self.err(format!("expected an integer, found {t:?}")),
        }
    }

    fn peek_ident(&self) -> Option<&'a str> {
        match self.peek() {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn module(&mut self) -> Result<Module> {
        let mut m = Module::default();
        while let Some(tok) = self.peek() {
            let line = self.line();
            let Tok::Ident(d) = tok else { return self.err(format!("unexpected {tok:?} at module scope")) };
            match d.as_str() {
                ".version" => {
                    self.i += 1;
                    m.version = match self.next()? {
                        Tok::F64(bits) => format!("{}", f64::from_bits(*bits)),
                        Tok::Int(v) => v.to_string(),
                        t => return self.err(format!("bad .version {t:?}")),
                    };
                }
                ".target" => {
                    self.i += 1;
                    m.target = self.ident()?.to_owned();
                    while self.eat_punct(',') {
                        self.ident()?;
                    }
                }
                ".address_size" => {
                    self.i += 1;
                    if self.int()? != 64 {
                        return self.err("only .address_size 64 is supported");
                    }
                }
                ".file" => {
                    self.i += 1;
                    let index = self.int()? as u32;
                    let Tok::Str(path) = self.next()? else { return self.err("expected a file name") };
                    m.files.push((index, path.clone()));
                    while self.eat_punct(',') {
                        self.int()?;
                    }
                }
                ".section" => {
                    self.i += 1;
                    self.ident()?;
                    self.skip_braces()?;
                }
                _ => {
                    // Linkage and space directives, then a variable or a function.
                    let mut linkage = Vec::new();
                    while let Some(d @ (".visible" | ".extern" | ".weak" | ".common")) = self.peek_ident() {
                        linkage.push(d);
                        self.i += 1;
                    }
                    match self.peek_ident() {
                        Some(".entry") | Some(".func") => m.functions.push(self.function(line)?),
                        Some(s) if Space::from_directive(s).is_some() => {
                            let v = self.variable()?;
                            self.expect_punct(';')?;
                            m.variables.push(v);
                        }
                        other => return self.err(format!("unexpected {other:?} at module scope")),
                    }
                }
            }
        }
        Ok(m)
    }

    fn skip_braces(&mut self) -> Result<()> {
        self.expect_punct('{')?;
        let mut depth = 1;
        while depth > 0 {
            match self.next()? {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// `.space [.align N] .type name[[N]] [= init]` (the `;` is left to the caller).
    fn variable(&mut self) -> Result<Variable> {
        let line = self.line();
        let space_name = self.ident()?;
        let space = Space::from_directive(space_name)
            .ok_or_else(|| ParseError { line, message: format!("`{space_name}` is not a state space") })?;
        let mut align = None;
        let mut elem_size = None;
        loop {
            match self.peek_ident() {
                Some(".align") => {
                    self.i += 1;
                    align = Some(self.int()? as u32);
                }
                Some(".ptr" | ".global" | ".shared" | ".const" | ".local") if space == Space::Param => {
                    self.i += 1
                }
                Some(ty) if ty.starts_with('.') => {
                    self.i += 1;
                    let v = ty.strip_prefix(".v").and_then(|n| n.parse::<u32>().ok());
                    if let Some(n) = v {
                        let ty = self.ident()?;
                        elem_size = Some(n * type_size(ty).ok_or_else(|| self.bad_type(ty))?);
                    } else {
                        elem_size = Some(type_size(ty).ok_or_else(|| self.bad_type(ty))?);
                    }
                }
                _ => break,
            }
        }
        let elem_size =
            elem_size.ok_or_else(|| ParseError { line, message: "variable without a type".into() })?;
        let name = self.ident()?.to_owned();
        let mut count = Some(1);
        if self.eat_punct('[') {
            if self.eat_punct(']') {
                count = None;
            } else {
                count = Some(self.int()?);
                self.expect_punct(']')?;
            }
        }
        let mut init = Vec::new();
        if self.eat_punct('=') {
            let push =
                |v: u64, init: &mut Vec<u8>| init.extend_from_slice(&v.to_le_bytes()[..elem_size as usize]);
            if self.eat_punct('{') {
                while !self.eat_punct('}') {
                    let v = self.init_value()?;
                    push(v, &mut init);
                    self.eat_punct(',');
                }
            } else {
                let v = self.init_value()?;
                push(v, &mut init);
            }
        }
        Ok(Variable { space, name, align: align.unwrap_or(elem_size.min(16)), elem_size, count, init, line })
    }

    fn init_value(&mut self) -> Result<u64> {
        if matches!(self.peek(), Some(Tok::F32(_) | Tok::F64(_))) {
            return match self.next()? {
                Tok::F32(b) => Ok(*b as u64),
                Tok::F64(b) => Ok(*b),
                _ => unreachable!(),
            };
        }
        self.int()
    }

    fn bad_type(&self, ty: &str) -> ParseError {
        ParseError { line: self.line(), message: format!("unknown type `{ty}`") }
    }

    fn param_list(&mut self) -> Result<Vec<Variable>> {
        let mut params = Vec::new();
        self.expect_punct('(')?;
        while !self.eat_punct(')') {
            params.push(self.variable()?);
            self.eat_punct(',');
        }
        Ok(params)
    }

    fn function(&mut self, line: u32) -> Result<Function> {
        let is_entry = self.ident()? == ".entry";
        let returns = if !is_entry && self.is_punct('(') { self.param_list()? } else { Vec::new() };
        let name = self.ident()?.to_owned();
        let params = if self.is_punct('(') { self.param_list()? } else { Vec::new() };
        let mut max_ntid = None;
        while let Some(d) = self.peek_ident() {
            self.i += 1;
            match d {
                ".maxntid" | ".reqntid" => {
                    let mut dims = [1u32; 3];
                    dims[0] = self.int()? as u32;
                    for d in dims.iter_mut().skip(1) {
                        if !self.eat_punct(',') {
                            break;
                        }
                        *d = self.int()? as u32;
                    }
                    max_ntid = Some(dims);
                }
                ".minnctapersm" | ".maxnreg" | ".maxnctapersm" => {
                    self.int()?;
                }
                ".noreturn" => {}
                other => return self.err(format!("unknown function directive `{other}`")),
            }
        }
        let body = if self.eat_punct(';') { None } else { Some(self.body()?) };
        Ok(Function { name, is_entry, params, returns, body, max_ntid, line })
    }

    fn body(&mut self) -> Result<Vec<Statement>> {
        self.expect_punct('{')?;
        let mut out = Vec::new();
        let mut depth = 1;
        loop {
            let line = self.line();
            match self.peek() {
                None => return self.err("unterminated function body"),
                Some(Tok::Punct('{')) => {
                    self.i += 1;
                    depth += 1;
                    out.push(Statement::Open);
                }
                Some(Tok::Punct('}')) => {
                    self.i += 1;
                    depth -= 1;
                    if depth == 0 {
                        return Ok(out);
                    }
                    out.push(Statement::Close);
                }
                Some(Tok::Ident(d)) if d == ".reg" => {
                    self.i += 1;
                    let mut ty = self.ident()?;
                    if let Some(n) = ty.strip_prefix(".v").filter(|n| n.parse::<u32>().is_ok()) {
                        let _ = n;
                        ty = self.ident()?;
                    }
                    let mut names = Vec::new();
                    loop {
                        let name = self.ident()?;
                        if self.eat_punct('<') {
                            let n = self.int()?;
                            self.expect_punct('>')?;
                            names.extend((0..n).map(|k| format!("{name}{k}")));
                        } else {
                            names.push(name.to_owned());
                        }
                        if !self.eat_punct(',') {
                            break;
                        }
                    }
                    self.expect_punct(';')?;
                    out.push(Statement::Reg { ty: ty.to_owned(), names });
                }
                Some(Tok::Ident(d)) if d == ".loc" => {
                    self.i += 1;
                    let file = self.int()? as u32;
                    let src_line = self.int()? as u32;
                    self.int()?;
                    // `, function_name LABEL, inlined_at FILE LINE COL`
                    while self.eat_punct(',') {
                        match self.ident()? {
                            "function_name" => {
                                self.ident()?;
                            }
                            "inlined_at" => {
                                for _ in 0..3 {
                                    self.int()?;
                                }
                            }
                            other => return self.err(format!("unknown .loc attribute `{other}`")),
                        }
                    }
                    out.push(Statement::Loc { file, line: src_line });
                }
                Some(Tok::Ident(d)) if d == ".pragma" => {
                    while !self.eat_punct(';') {
                        self.next()?;
                    }
                }
                Some(Tok::Ident(d)) if Space::from_directive(d).is_some() => {
                    let v = self.variable()?;
                    self.expect_punct(';')?;
                    out.push(Statement::Var(v));
                }
                Some(Tok::Ident(name)) if self.peek_at(1) == Some(&Tok::Punct(':')) => {
                    self.i += 2;
                    out.push(Statement::Label(name.clone()));
                }
                Some(_) => out.push(Statement::Inst(self.instruction(line)?)),
            }
        }
    }

    fn instruction(&mut self, line: u32) -> Result<Instruction> {
        let guard = if self.eat_punct('@') {
            let neg = self.eat_punct('!');
            Some((self.ident()?.to_owned(), neg))
        } else {
            None
        };
        let opcode = self.ident()?.to_owned();
        if opcode.starts_with('.') {
            return self.err(format!("unknown directive `{opcode}` in a function body"));
        }
        let mut operands = Vec::new();
        if !self.eat_punct(';') {
            loop {
                operands.push(self.operand()?);
                if self.eat_punct(';') {
                    break;
                }
                self.expect_punct(',')?;
            }
        }
        Ok(Instruction { guard, opcode, operands, line })
    }

    fn operand(&mut self) -> Result<Operand> {
        match self.next()? {
            Tok::Punct('{') => {
                let mut items = Vec::new();
                while !self.eat_punct('}') {
                    items.push(self.operand()?);
                    self.eat_punct(',');
                }
                Ok(Operand::Vector(items))
            }
            Tok::Punct('(') => {
                let mut items = Vec::new();
                while !self.eat_punct(')') {
                    items.push(self.operand()?);
                    self.eat_punct(',');
                }
                Ok(Operand::List(items))
            }
            Tok::Punct('[') => {
                let mut base = None;
                let mut offset = 0i64;
                if let Some(name) = self.peek_ident() {
                    self.i += 1;
                    base = Some(name.to_owned());
                    if self.eat_punct('+') {
                        offset = self.int()? as i64;
                    } else if self.is_punct('-') {
                        offset = self.int()? as i64;
                    }
                } else {
                    offset = self.int()? as i64;
                }
                self.expect_punct(']')?;
                Ok(Operand::Address { base, offset })
            }
            Tok::Punct('-') => match self.next()? {
                Tok::Int(v) => Ok(Operand::Int(v.wrapping_neg())),
                Tok::F64(b) => Ok(Operand::F64(b ^ (1 << 63))),
                Tok::F32(b) => Ok(Operand::F32(b ^ (1 << 31))),
                t => self.err(format!("expected a number after `-`, found {t:?}")),
            },
            Tok::Punct('!') => Ok(Operand::Not(self.ident()?.to_owned())),
            Tok::Int(v) => Ok(Operand::Int(*v)),
            Tok::F32(b) => Ok(Operand::F32(*b)),
            Tok::F64(b) => Ok(Operand::F64(*b)),
            Tok::Ident(name) if name == "_" => Ok(Operand::Sink),
            Tok::Ident(name) => {
                if self.eat_punct('|') {
                    Ok(Operand::Pair(name.clone(), self.ident()?.to_owned()))
                } else {
                    Ok(Operand::Name(name.clone()))
                }
            }
            t => self.err(format!("unexpected {t:?} in an operand")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
.version 8.8
.target sm_90
.address_size 64
.extern .shared .align 16 .b8 smem[];
.global .align 4 .b8 table[8] = {1, 2, 3, 4, 5, 6, 7, 8};
.func (.param .align 8 .b8 ret0[16]) helper(.param .b64 helper_param_0);
.visible .entry k(
    .param .u64 k_param_0,
    .param .align 4 .b8 k_param_1[12]
)
.maxntid 256, 1, 1
{
    .reg .pred %p<2>;
    .reg .b32 %r<3>;
    .loc 1 10 3, function_name $L__info_string0, inlined_at 1 20 5
    mov.u32 %r0, %tid.x;
$L__BB0_1:
    @!%p1 bra $L__BB0_1;
    { .reg .b16 %tmp; mov.b32 {%tmp, _}, %r1; }
    ld.global.v2.u32 {%r1, %r2}, [%rd1+-8];
    setp.lt.s32 %p0|%p1, %r0, -3;
    ret;
}
.file 1 "a.cu"
.section .debug_str { $L__info_string0: .b8 95,0 }
"#;

    #[test]
    fn parses_a_module() {
        let m = parse_module(SMALL).unwrap();
        assert_eq!(m.version, "8.8");
        assert_eq!(m.target, "sm_90");
        assert_eq!(m.variables.len(), 2);
        assert_eq!(m.variables[0].count, None);
        assert_eq!(m.variables[1].init, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m.functions.len(), 2);
        assert!(m.functions[0].body.is_none());
        assert_eq!(m.functions[0].returns[0].size(), 16);
        let k = &m.functions[1];
        assert!(k.is_entry);
        assert_eq!(k.max_ntid, Some([256, 1, 1]));
        assert_eq!(k.params[1].size(), 12);
        assert_eq!(k.params[1].align, 4);
        let body = k.body.as_ref().unwrap();
        assert!(matches!(&body[1], Statement::Reg { names, .. } if names == &["%r0", "%r1", "%r2"]));
        assert_eq!(body[2], Statement::Loc { file: 1, line: 10 });
        let Statement::Inst(bra) = &body[5] else { panic!() };
        assert_eq!(bra.guard, Some(("%p1".into(), true)));
        let Statement::Inst(ld) = &body[10] else { panic!("{:?}", body[10]) };
        assert_eq!(ld.operands[1], Operand::Address { base: Some("%rd1".into()), offset: -8 });
        let Statement::Inst(setp) = &body[11] else { panic!() };
        assert_eq!(setp.operands[0], Operand::Pair("%p0".into(), "%p1".into()));
        assert_eq!(setp.operands[2], Operand::Int((-3i64) as u64));
        assert_eq!(m.files, vec![(1, "a.cu".to_owned())]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_module(".version 8.8\n.target sm_90\n.visible .entry k()\n{\n add.s32 %r1 %r2;\n}")
            .unwrap_err();
        assert_eq!(e.line, 5);
    }
}
