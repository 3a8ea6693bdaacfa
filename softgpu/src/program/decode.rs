//! From the parsed module to [`Kernel`]s: register slots (with `{ }` scopes), labels, the
//! parameter, shared and local memory layouts, device functions appended after the kernel
//! that calls them, and each instruction handed to its family's decoder ([`crate::isa`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::inst::{Addr, CallCopies, Class, Inst, Kind, MemSpace, Opnd, RegId};
use super::{Kernel, LoadError, ParamSlot};
use crate::memory::DeviceMemory;
use crate::ptx::{Function, Instruction, Module, Operand, Space, Statement, Variable};

/// Special registers, at fixed slots `0..SPECIAL.len()`; the launch fills them per lane.
pub const SPECIAL: &[&str] = &[
    "%tid.x",
    "%tid.y",
    "%tid.z",
    "%ntid.x",
    "%ntid.y",
    "%ntid.z",
    "%ctaid.x",
    "%ctaid.y",
    "%ctaid.z",
    "%nctaid.x",
    "%nctaid.y",
    "%nctaid.z",
    "%laneid",
    "%warpid",
    "%nwarpid",
    "%smid",
    "%nsmid",
    "%gridid",
    "%lanemask_eq",
    "%lanemask_le",
    "%lanemask_lt",
    "%lanemask_ge",
    "%lanemask_gt",
    "%clock",
    "%clock64",
    "%dynamic_smem_size",
    "%total_smem_size",
];

/// The slot of special register `name`.
pub fn special_slot(name: &str) -> Option<RegId> {
    SPECIAL.iter().position(|&s| s == name).map(|i| i as RegId)
}

/// An opcode split at its dots, with its raw operands, for the family decoders.
pub struct OpSpec<'a> {
    /// `ld` in `ld.global.nc.v2.f32`.
    pub base: &'a str,
    /// `["global", "nc", "v2", "f32"]`.
    pub mods: Vec<&'a str>,
    pub operands: &'a [Operand],
}

impl OpSpec<'_> {
    /// Whether modifier `m` (without its dot) is present.
    pub fn has(&self, m: &str) -> bool {
        self.mods.contains(&m)
    }

    /// The type modifiers (`f32`, `u64`, `bf16x2`, `pred`, ...), in order.
    pub fn types(&self) -> Vec<&str> {
        self.mods.iter().copied().filter(|m| crate::ptx::type_size(m).is_some()).collect()
    }

    /// The last type modifier.
    pub fn ty(&self) -> Result<&str, String> {
        self.types().last().copied().ok_or_else(|| "no type modifier".to_owned())
    }

    /// The vector width from `.v2`/`.v4`/`.v8`, else 1.
    pub fn vector(&self) -> u32 {
        self.mods.iter().find_map(|m| m.strip_prefix('v').and_then(|n| n.parse().ok())).unwrap_or(1)
    }

    /// Operand `i`, or an error saying the instruction is short of operands.
    pub fn operand(&self, i: usize) -> Result<&Operand, String> {
        self.operands.get(i).ok_or_else(|| format!("expected at least {} operands", i + 1))
    }
}

/// What a symbol resolves to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Symbol {
    /// A device address (`.global`, `.const`).
    Device(u64),
    /// An offset in the CTA's shared memory.
    Shared(u64),
    /// An offset in the thread's local memory (depots and call parameters).
    Local(u64),
    /// An offset in the kernel's parameter buffer.
    KernelParam(u64),
}

/// Operand resolution for the family decoders.
pub struct DecodeCx<'a> {
    scopes: Vec<HashMap<String, RegId>>,
    next_reg: &'a mut RegId,
    symbols: &'a mut Symbols,
    /// Function-scope symbols (params, locals, call-site params), innermost last.
    local_symbols: Vec<HashMap<String, Symbol>>,
    /// The register slots declared `.pred`.
    preds: std::collections::HashSet<RegId>,
}

impl DecodeCx<'_> {
    /// A register slot for a register name.
    pub fn reg_slot(&self, name: &str) -> Option<RegId> {
        if let Some(s) = special_slot(name) {
            return Some(s);
        }
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    /// Whether `op` is a register declared `.pred` (to tell operand forms apart, such as
    /// `cp.async`'s `src-size` and `ignore-src`).
    pub fn is_pred(&self, op: Opnd) -> bool {
        matches!(op, Opnd::Reg(r) if self.preds.contains(&r))
    }

    fn symbol(&mut self, name: &str) -> Option<Symbol> {
        if let Some(s) = self.local_symbols.iter().rev().find_map(|s| s.get(name).copied()) {
            return Some(s);
        }
        self.symbols.module_symbol(name)
    }

    /// A source or destination operand: a register, an immediate (its 64-bit pattern, as
    /// written: the family converts literals for its type with [`literal_as`]), a symbol's
    /// address, or `_`.
    pub fn opnd(&mut self, op: &Operand) -> Result<Opnd, String> {
        match op {
            Operand::Name(n) => {
                if let Some(r) = self.reg_slot(n) {
                    return Ok(Opnd::Reg(r));
                }
                match self.symbol(n) {
                    Some(
                        Symbol::Device(a) | Symbol::Shared(a) | Symbol::Local(a) | Symbol::KernelParam(a),
                    ) => Ok(Opnd::Imm(a)),
                    None => Err(format!("unknown register or symbol `{n}`")),
                }
            }
            Operand::Int(v) => Ok(Opnd::Imm(*v)),
            Operand::F32(b) => Ok(Opnd::Imm(*b as u64)),
            Operand::F64(b) => Ok(Opnd::Imm(*b)),
            Operand::Sink => Ok(Opnd::Sink),
            other => Err(format!("expected a register or immediate, found {other:?}")),
        }
    }

    /// A source operand of floating type `ty` (`f32`/`f64`/`f16`...): literals converted.
    pub fn opnd_typed(&mut self, op: &Operand, ty: &str) -> Result<Opnd, String> {
        match op {
            Operand::F32(_) | Operand::F64(_) | Operand::Int(_) => Ok(Opnd::Imm(literal_as(op, ty))),
            _ => self.opnd(op),
        }
    }

    /// The registers of a `{a, b, …}` vector operand (or a single operand as a one-element list).
    pub fn vector(&mut self, op: &Operand) -> Result<Vec<Opnd>, String> {
        match op {
            Operand::Vector(items) => items.iter().map(|o| self.opnd(o)).collect(),
            other => Ok(vec![self.opnd(other)?]),
        }
    }

    /// A `[…]` memory operand with the space the opcode names (`None`: generic). A `.param`
    /// access resolves to the kernel's parameter buffer or to the thread's local memory (a
    /// device function's parameters and call-site parameters live there).
    pub fn mem(&mut self, op: &Operand, space: Option<Space>) -> Result<(MemSpace, Addr), String> {
        let Operand::Address { base, offset } = op else {
            return Err(format!("expected a memory operand `[…]`, found {op:?}"));
        };
        let mut space = match space {
            None => MemSpace::Generic,
            Some(Space::Global | Space::Const) => MemSpace::Global,
            Some(Space::Shared) => MemSpace::Shared,
            Some(Space::Local) => MemSpace::Local,
            Some(Space::Param) => MemSpace::KernelParam,
        };
        let Some(name) = base else { return Ok((space, Addr { base: None, offset: *offset })) };
        if let Some(r) = self.reg_slot(name) {
            return Ok((space, Addr { base: Some(r), offset: *offset }));
        }
        let sym = self.symbol(name).ok_or_else(|| format!("unknown symbol `{name}`"))?;
        let value = match sym {
            Symbol::Local(a) => {
                if space == MemSpace::KernelParam {
                    space = MemSpace::Local;
                }
                a
            }
            Symbol::Device(a) | Symbol::Shared(a) | Symbol::KernelParam(a) => a,
        };
        Ok((space, Addr { base: None, offset: value as i64 + offset }))
    }
}

/// A literal operand as the bit pattern of `ty`: an f64 literal becomes f32 for `f32`, an
/// f32 literal is widened for `f64`, integers are kept.
pub fn literal_as(op: &Operand, ty: &str) -> u64 {
    match (op, ty) {
        (Operand::F64(b), "f32") => (f64::from_bits(*b) as f32).to_bits() as u64,
        (Operand::F32(b), "f64") => (f32::from_bits(*b) as f64).to_bits(),
        (Operand::F32(b), _) => *b as u64,
        (Operand::F64(b), _) => *b,
        (Operand::Int(v), _) => *v,
        _ => 0,
    }
}

/// Module-scope symbols, and the shared-memory layout of the kernel being decoded.
pub struct Symbols {
    /// Module-scope `.shared` variables by name.
    shared_vars: HashMap<String, Variable>,
    device: HashMap<String, u64>,
    shared_offsets: HashMap<String, u64>,
    static_shared: u64,
    /// The largest alignment of an `extern .shared` array, which starts after the static ones.
    dynamic_align: u64,
    dynamic_used: bool,
}

impl Symbols {
    fn module_symbol(&mut self, name: &str) -> Option<Symbol> {
        if let Some(&a) = self.device.get(name) {
            return Some(Symbol::Device(a));
        }
        let v = self.shared_vars.get(name)?.clone();
        Some(Symbol::Shared(self.shared(&v)))
    }

    /// The shared offset of `v`, placing it on first use. Dynamic (unsized) arrays are given
    /// the sentinel `u64::MAX` until the static layout is known (see `finish_shared`).
    fn shared(&mut self, v: &Variable) -> u64 {
        if let Some(&o) = self.shared_offsets.get(&v.name) {
            return o;
        }
        let o = if v.count.is_none() {
            self.dynamic_align = self.dynamic_align.max(v.align as u64);
            self.dynamic_used = true;
            DYNAMIC_SHARED
        } else {
            let o = self.static_shared.next_multiple_of(v.align.max(1) as u64);
            self.static_shared = o + v.size();
            o
        };
        self.shared_offsets.insert(v.name.clone(), o);
        o
    }
}

/// Where dynamic shared memory starts, patched once the static layout is known. Addresses of
/// dynamic arrays are decoded as `DYNAMIC_SHARED + k` and relocated after the kernel is done.
const DYNAMIC_SHARED: u64 = 1 << 40;

/// Decodes every kernel of `module`, placing its module variables in `memory`.
pub fn decode_module(module: &Module, memory: &DeviceMemory) -> Result<(Vec<Kernel>, Vec<u64>), LoadError> {
    let mut device = HashMap::new();
    let mut allocations = Vec::new();
    for v in module.variables.iter().filter(|v| matches!(v.space, Space::Global | Space::Const)) {
        let size = v.size().max(1);
        let addr = memory.alloc(size)?;
        allocations.push(addr);
        let mut bytes = v.init.clone();
        bytes.resize(size as usize, 0);
        memory.write(addr, &bytes)?;
        device.insert(v.name.clone(), addr);
    }
    let files: Arc<HashMap<u32, String>> = Arc::new(module.files.iter().cloned().collect());
    let mut kernels = Vec::new();
    for f in module.functions.iter().filter(|f| f.is_entry && f.body.is_some()) {
        let mut symbols = Symbols {
            shared_vars: module
                .variables
                .iter()
                .filter(|v| v.space == Space::Shared)
                .map(|v| (v.name.clone(), v.clone()))
                .collect(),
            device: device.clone(),
            shared_offsets: HashMap::new(),
            static_shared: 0,
            dynamic_align: 16,
            dynamic_used: false,
        };
        kernels.push(decode_kernel(module, f, &mut symbols, files.clone())?);
    }
    Ok((kernels, allocations))
}

fn unsupported(kernel: &str, inst: &Instruction, message: impl Into<String>) -> LoadError {
    LoadError::Unsupported {
        kernel: kernel.to_owned(),
        line: inst.line,
        instruction: instruction_text(inst),
        message: message.into(),
    }
}

/// An instruction's text as written (opcode and operands), for messages.
pub fn instruction_text(inst: &Instruction) -> String {
    let guard =
        inst.guard.as_ref().map(|(p, n)| format!("@{}{p} ", if *n { "!" } else { "" })).unwrap_or_default();
    let ops: Vec<String> = inst.operands.iter().map(operand_text).collect();
    format!("{guard}{} {}", inst.opcode, ops.join(", "))
}

fn operand_text(op: &Operand) -> String {
    match op {
        Operand::Name(n) => n.clone(),
        Operand::Not(n) => format!("!{n}"),
        Operand::Pair(a, b) => format!("{a}|{b}"),
        Operand::Int(v) => (*v as i64).to_string(),
        Operand::F32(b) => format!("0f{b:08X}"),
        Operand::F64(b) => format!("0d{b:016X}"),
        Operand::Sink => "_".into(),
        Operand::Vector(v) => format!("{{{}}}", v.iter().map(operand_text).collect::<Vec<_>>().join(", ")),
        Operand::List(v) => format!("({})", v.iter().map(operand_text).collect::<Vec<_>>().join(", ")),
        Operand::Address { base, offset } => match base {
            Some(b) if *offset != 0 => format!("[{b}+{offset}]"),
            Some(b) => format!("[{b}]"),
            None => format!("[{offset}]"),
        },
    }
}

/// The functions `f` calls, transitively, in first-call order (recursion is refused).
fn callees<'m>(module: &'m Module, f: &'m Function) -> Result<Vec<&'m Function>, LoadError> {
    fn visit<'m>(
        module: &'m Module,
        f: &'m Function,
        stack: &mut Vec<&'m str>,
        out: &mut Vec<&'m Function>,
    ) -> Result<(), LoadError> {
        for s in f.body.iter().flatten() {
            let Statement::Inst(i) = s else { continue };
            if !i.opcode.starts_with("call") {
                continue;
            }
            let Some(Operand::Name(name)) = i.operands.iter().find(|o| matches!(o, Operand::Name(_))) else {
                continue;
            };
            if stack.contains(&name.as_str()) {
                return Err(LoadError::Invalid(format!("recursive call of `{name}` is not supported")));
            }
            let callee =
                module.functions.iter().find(|g| &g.name == name && g.body.is_some()).ok_or_else(|| {
                    LoadError::Invalid(format!("call of `{name}`, which has no body in this module"))
                })?;
            if !out.iter().any(|g| g.name == callee.name) {
                out.push(callee);
                stack.push(&callee.name);
                visit(module, callee, stack, out)?;
                stack.pop();
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(module, f, &mut vec![&f.name], &mut out)?;
    Ok(out)
}

/// Bump allocation of per-thread local memory.
struct LocalLayout {
    size: u64,
}

impl LocalLayout {
    fn place(&mut self, v: &Variable) -> u64 {
        let o = self.size.next_multiple_of(v.align.max(1) as u64);
        self.size = o + v.size().max(1);
        o
    }
}

fn decode_kernel(
    module: &Module,
    kernel: &Function,
    symbols: &mut Symbols,
    files: Arc<HashMap<u32, String>>,
) -> Result<Kernel, LoadError> {
    let funcs: Vec<&Function> = std::iter::once(kernel).chain(callees(module, kernel)?).collect();
    // Pass 1: instruction indices of function starts and labels.
    let mut starts = HashMap::new();
    let mut labels: Vec<HashMap<&str, u32>> = Vec::new();
    let mut pc = 0u32;
    for f in &funcs {
        starts.insert(f.name.as_str(), pc);
        let mut l = HashMap::new();
        for s in f.body.iter().flatten() {
            match s {
                Statement::Label(name) => {
                    l.insert(name.as_str(), pc);
                }
                Statement::Inst(_) => pc += 1,
                _ => {}
            }
        }
        labels.push(l);
    }
    // Parameters of the kernel, laid out with their alignment.
    let mut params = Vec::new();
    let mut param_bytes = 0u64;
    let mut kernel_syms = HashMap::new();
    for p in &kernel.params {
        let offset = param_bytes.next_multiple_of(p.align.max(1) as u64);
        params.push(ParamSlot { offset: offset as u32, size: p.size() as u32, align: p.align });
        kernel_syms.insert(p.name.clone(), Symbol::KernelParam(offset));
        param_bytes = offset + p.size();
    }
    // Each device function's formal and return parameters get local memory.
    let mut local = LocalLayout { size: 0 };
    let mut formals: HashMap<&str, (Vec<(u64, u64)>, Vec<(u64, u64)>)> = HashMap::new();
    let mut func_syms: HashMap<&str, HashMap<String, Symbol>> = HashMap::new();
    for f in funcs.iter().skip(1) {
        let mut syms = HashMap::new();
        let mut place = |v: &Variable| {
            let o = local.place(v);
            syms.insert(v.name.clone(), Symbol::Local(o));
            (o, v.size())
        };
        let ins: Vec<_> = f.params.iter().map(&mut place).collect();
        let outs: Vec<_> = f.returns.iter().map(&mut place).collect();
        formals.insert(&f.name, (ins, outs));
        func_syms.insert(&f.name, syms);
    }
    func_syms.insert(&kernel.name, kernel_syms);

    let mut next_reg = SPECIAL.len() as RegId;
    let mut code = Vec::with_capacity(pc as usize);
    for (fi, f) in funcs.iter().enumerate() {
        let mut cx = DecodeCx {
            scopes: vec![HashMap::new()],
            next_reg: &mut next_reg,
            symbols: &mut *symbols,
            local_symbols: vec![func_syms.remove(f.name.as_str()).unwrap_or_default()],
            preds: Default::default(),
        };
        let mut loc = None;
        let in_kernel = fi == 0;
        for s in f.body.iter().flatten() {
            match s {
                Statement::Label(_) => {}
                Statement::Loc { file, line } => loc = Some((*file, *line)),
                Statement::Open => {
                    cx.scopes.push(HashMap::new());
                    cx.local_symbols.push(HashMap::new());
                }
                Statement::Close => {
                    cx.scopes.pop();
                    cx.local_symbols.pop();
                }
                Statement::Reg { names, ty } => {
                    for n in names {
                        let slot = *cx.next_reg;
                        *cx.next_reg += 1;
                        if ty == ".pred" {
                            cx.preds.insert(slot);
                        }
                        cx.scopes.last_mut().expect("a scope").insert(n.clone(), slot);
                    }
                }
                Statement::Var(v) => {
                    let sym = match v.space {
                        Space::Local | Space::Param => Symbol::Local(local.place(v)),
                        Space::Shared => Symbol::Shared(cx.symbols.shared(v)),
                        other => {
                            return Err(LoadError::Invalid(format!(
                                "{}: `{}` in {other:?} space inside a function is not supported",
                                f.name, v.name
                            )));
                        }
                    };
                    cx.local_symbols.last_mut().expect("a scope").insert(v.name.clone(), sym);
                }
                Statement::Inst(i) => {
                    let mut inst = decode_control(i, &labels[fi], &starts, &formals, &mut cx, in_kernel)
                        .transpose()
                        .or_else(|| crate::isa::decode(&spec_of(i), &mut cx).transpose())
                        .unwrap_or_else(|| Err(format!("unknown instruction `{}`", i.opcode)))
                        .map_err(|m| unsupported(&kernel.name, i, m))?;
                    if let Some((p, neg)) = &i.guard {
                        let r = cx.reg_slot(p).ok_or_else(|| {
                            unsupported(&kernel.name, i, format!("unknown predicate `{p}`"))
                        })?;
                        inst.guard = Some((r, *neg));
                    }
                    inst.opcode = instruction_text(i);
                    inst.ptx_line = i.line;
                    inst.loc = loc;
                    code.push(inst);
                }
            }
        }
    }
    // Dynamic shared memory starts after the static arrays.
    let dynamic_align = symbols.dynamic_align.max(16);
    let dynamic_start = symbols.static_shared.next_multiple_of(dynamic_align);
    if symbols.dynamic_used {
        relocate_dynamic_shared(&mut code, dynamic_start);
    }
    let max_threads = kernel.max_ntid.map_or(1024, |d| d.iter().product());
    Ok(Kernel {
        name: kernel.name.clone(),
        params,
        param_bytes: param_bytes as u32,
        static_shared: if symbols.dynamic_used { dynamic_start as u32 } else { symbols.static_shared as u32 },
        dynamic_shared_align: dynamic_align as u32,
        local_bytes: local.size as u32,
        max_threads,
        reg_slots: next_reg,
        registers: None,
        code,
        files,
    })
}

/// Replaces the placeholder [`DYNAMIC_SHARED`] base in immediates and addresses by the real
/// start of dynamic shared memory.
fn relocate_dynamic_shared(code: &mut [Inst], start: u64) {
    let fix = |v: u64| {
        if (DYNAMIC_SHARED..DYNAMIC_SHARED * 2).contains(&v) { v - DYNAMIC_SHARED + start } else { v }
    };
    for inst in code {
        for op in &mut inst.ops {
            if let Opnd::Imm(v) = op {
                *v = fix(*v);
            }
        }
        if let Some(a) = &mut inst.addr
            && a.base.is_none()
        {
            a.offset = fix(a.offset as u64) as i64;
        }
    }
}

fn spec_of(i: &Instruction) -> OpSpec<'_> {
    let mut parts = i.opcode.split('.');
    let base = parts.next().unwrap_or("");
    OpSpec { base, mods: parts.collect(), operands: &i.operands }
}

/// Branches, barriers, calls, returns, exit and trap; `None` for other opcodes.
fn decode_control(
    i: &Instruction,
    labels: &HashMap<&str, u32>,
    starts: &HashMap<&str, u32>,
    formals: &HashMap<&str, (Vec<(u64, u64)>, Vec<(u64, u64)>)>,
    cx: &mut DecodeCx<'_>,
    in_kernel: bool,
) -> Result<Option<Inst>, String> {
    let spec = spec_of(i);
    let control = |kind, ops| Inst::new(kind, ops).with_class(Class::Control);
    Ok(Some(match spec.base {
        "bra" | "brx" => {
            let Some(Operand::Name(l)) = i.operands.first() else { return Err("bra needs a label".into()) };
            let target = *labels.get(l.as_str()).ok_or_else(|| format!("unknown label `{l}`"))?;
            control(Kind::Branch(target), vec![])
        }
        "exit" => control(Kind::Exit, vec![]),
        "ret" => control(if in_kernel { Kind::Exit } else { Kind::Return }, vec![]),
        "trap" => control(Kind::Trap, vec![]),
        "bar" | "barrier" if spec.has("warp") => {
            let mask = cx.opnd(spec.operand(0)?)?;
            control(Kind::WarpSync, vec![mask])
        }
        "bar" | "barrier" => {
            let wait = !spec.has("arrive");
            if spec.has("red") {
                return Err("bar.red is not supported".into());
            }
            let ops = i.operands.iter().map(|o| cx.opnd(o)).collect::<Result<Vec<_>, _>>()?;
            control(Kind::Barrier { wait }, ops)
        }
        "call" => {
            let mut rets = &[][..];
            let mut args = &[][..];
            let mut name = None;
            for o in &i.operands {
                match o {
                    Operand::List(items) if name.is_none() => rets = items,
                    Operand::List(items) => args = items,
                    Operand::Name(n) => name = Some(n.as_str()),
                    other => return Err(format!("unexpected call operand {other:?}")),
                }
            }
            let name = name.ok_or("call without a function name")?;
            let target = *starts.get(name).ok_or_else(|| format!("call of unknown function `{name}`"))?;
            let (ins, outs) =
                formals.get(name).ok_or_else(|| format!("`{name}` is not a device function"))?;
            let site = |o: &Operand, cx: &mut DecodeCx<'_>| -> Result<u64, String> {
                let Operand::Name(n) = o else { return Err(format!("call parameter {o:?} is not a name")) };
                match cx.symbol(n) {
                    Some(Symbol::Local(a)) => Ok(a),
                    _ => Err(format!("call parameter `{n}` is not a declared .param")),
                }
            };
            if args.len() != ins.len() || rets.len() != outs.len() {
                return Err(format!("call of `{name}` with the wrong number of parameters"));
            }
            let mut copies = CallCopies::default();
            for (a, &(to, len)) in args.iter().zip(ins) {
                copies.args.push((site(a, cx)? as u32, to as u32, len as u32));
            }
            for (r, &(from, len)) in rets.iter().zip(outs) {
                copies.results.push((from as u32, site(r, cx)? as u32, len as u32));
            }
            let mut inst = control(Kind::Call { target }, vec![]);
            inst.calls = Some(Box::new(copies));
            inst
        }
        _ => return Ok(None),
    }))
}
