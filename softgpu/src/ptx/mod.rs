//! The PTX front end: tokens ([`lex`]), the syntax tree ([`ast`]) and the parser ([`parse`]).

pub mod ast;
pub mod lex;
pub mod parse;

pub use ast::{Function, Instruction, Module, Operand, Space, Statement, Variable};
pub use parse::{ParseError, parse_module, type_size};
