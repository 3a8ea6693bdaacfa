//! No AMX off x86-64: [`super::enabled`] is false, so nothing here is ever called.

pub(super) fn request_tile_state() -> bool {
    false
}

pub(super) struct Tiles(());

impl Tiles {
    pub unsafe fn load() -> Tiles {
        unreachable!("AMX tiles off x86-64")
    }
    pub fn zero(&mut self) {}
    pub unsafe fn step(&mut self, _: *const u8, _: *const u8, _: usize, _: *const u8) {}
    pub fn store(&mut self, _: &mut [f32; 32 * 32]) {}
    pub fn spin(&mut self, _: u64) {}
}
