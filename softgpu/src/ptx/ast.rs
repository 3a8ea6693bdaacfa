//! The parsed form of a PTX module: variables, functions and statements, with names still as
//! text. `decode` turns it into executable instructions.

/// A PTX state space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    Global,
    Shared,
    Const,
    Local,
    Param,
}

impl Space {
    /// The space named by a directive (`.global` → Global), if it is one.
    pub fn from_directive(d: &str) -> Option<Space> {
        Some(match d {
            ".global" => Space::Global,
            ".shared" => Space::Shared,
            ".const" => Space::Const,
            ".local" => Space::Local,
            ".param" => Space::Param,
            _ => return None,
        })
    }
}

/// A variable: module-scope memory, a function's local or shared array, or a parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    pub space: Space,
    pub name: String,
    /// The declared alignment in bytes (the element size when not given).
    pub align: u32,
    /// Bytes per element (`.b8` → 1, `.u64` → 8).
    pub elem_size: u32,
    /// Elements: `Some(n)` for `name[n]` or a scalar (1), `None` for an unsized `name[]`.
    pub count: Option<u64>,
    /// Initial bytes (`= {…}`), little-endian, zero-extended to the size by the loader.
    pub init: Vec<u8>,
    pub line: u32,
}

impl Variable {
    /// The size in bytes (0 for an unsized array).
    pub fn size(&self) -> u64 {
        self.count.unwrap_or(0) * self.elem_size as u64
    }
}

/// A function: a kernel (`.entry`) or a device function (`.func`), maybe only declared.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub is_entry: bool,
    pub params: Vec<Variable>,
    /// `.func`'s return parameters.
    pub returns: Vec<Variable>,
    /// `None` for a prototype (`.func f(...);`).
    pub body: Option<Vec<Statement>>,
    /// `.maxntid` / `.reqntid`, if given.
    pub max_ntid: Option<[u32; 3]>,
    pub line: u32,
}

/// One statement of a function body.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    Label(String),
    Inst(Instruction),
    /// `.reg .TYPE names;`, `%r<N>` expanded to `%r0 … %r{N-1}`.
    Reg {
        ty: String,
        names: Vec<String>,
    },
    /// A `.local`, `.shared` or `.param` variable declared in the body.
    Var(Variable),
    /// `{`: registers declared until the matching `}` shadow outer ones.
    Open,
    Close,
    /// `.loc FILE LINE COL`: the source position of the instructions that follow.
    Loc {
        file: u32,
        line: u32,
    },
}

/// One instruction as written: `@!%p add.s32 %r1, %r2, 4;`.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    /// The guard predicate and whether it is negated.
    pub guard: Option<(String, bool)>,
    /// The full opcode with its modifiers, e.g. `ld.global.nc.v2.f32`.
    pub opcode: String,
    pub operands: Vec<Operand>,
    /// The PTX line, for messages.
    pub line: u32,
}

/// An operand as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A register, special register, variable, label or function name.
    Name(String),
    /// `!%p`.
    Not(String),
    /// `%p|%q`: setp's two destinations.
    Pair(String, String),
    /// An integer, as its 64-bit two's-complement pattern.
    Int(u64),
    F32(u32),
    F64(u64),
    /// `_`.
    Sink,
    /// `{a, b, …}`.
    Vector(Vec<Operand>),
    /// `[base+offset]`, `[base]` or `[offset]`.
    Address {
        base: Option<String>,
        offset: i64,
    },
    /// `(a, b, …)`: a call's argument or return list.
    List(Vec<Operand>),
}

/// A parsed module.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Module {
    pub version: String,
    pub target: String,
    pub variables: Vec<Variable>,
    pub functions: Vec<Function>,
    /// `.file` entries: index and path.
    pub files: Vec<(u32, String)>,
}
