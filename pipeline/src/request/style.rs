//! The 78 style presets of OctoAI's `SDXLStyles`, each a prompt template and a negative prompt,
//! written for kiln (OctoAI does not publish its templates; these are kiln's own wording).
//!
//! A template holds `{prompt}` once; [`Style::apply`] puts the user's prompt there. The preset's
//! negative comes first and the user's negative prompt after it, joined by ", "
//! ([`Style::negative_with`]); with either one empty, the other is used alone. `base` changes
//! nothing: its template is `{prompt}` and it has no negative. Presets apply to `prompt` and
//! `prompt_2` (when sent) and to both negative prompts.

/// One style preset.
#[derive(Debug, PartialEq, Eq)]
pub struct Style {
    /// The name, exactly as OctoAI's API spells it.
    pub name: &'static str,
    /// The prompt template; `{prompt}` marks where the user's prompt goes.
    pub prompt: &'static str,
    /// What the style steers away from (may be empty).
    pub negative: &'static str,
}

impl Style {
    /// The preset called `name` (exact spelling, as the API's enum).
    pub fn named(name: &str) -> Option<&'static Style> {
        STYLES.iter().find(|s| s.name == name)
    }

    /// The template with `prompt` in place of `{prompt}`.
    pub fn apply(&self, prompt: &str) -> String {
        self.prompt.replacen("{prompt}", prompt, 1)
    }

    /// The preset's negative, then ", ", then the user's; `None` when both are empty.
    pub fn negative_with(&self, user: Option<&str>) -> Option<String> {
        let user = user.filter(|u| !u.is_empty());
        match (self.negative.is_empty(), user) {
            (true, None) => None,
            (true, Some(u)) => Some(u.to_string()),
            (false, None) => Some(self.negative.to_string()),
            (false, Some(u)) => Some(format!("{}, {u}", self.negative)),
        }
    }
}

const fn style(name: &'static str, prompt: &'static str, negative: &'static str) -> Style {
    Style { name, prompt, negative }
}

/// Negative terms most photographic and illustrative presets share.
macro_rules! messy {
    ($extra:literal) => {
        concat!($extra, ", muddy colours, smeared details, distorted anatomy, watermark, caption text")
    };
}

/// Every preset, in the order of the API's `SDXLStyles` enum.
pub static STYLES: [Style; 78] = [
    style("base", "{prompt}", ""),
    style(
        "3d-model",
        "three-dimensional render of {prompt}, sculpted digital model, soft studio lighting, clean shading, octane-style render",
        messy!("flat drawing, sketch, grainy photo"),
    ),
    style(
        "analog-film",
        "{prompt}, shot on analog film, visible grain, faded warm tones, slight vignette, nostalgic snapshot",
        messy!("digital look, oversharpened, plastic skin, cartoon"),
    ),
    style(
        "anime",
        "anime illustration of {prompt}, cel shading, crisp line work, expressive eyes, vivid key visual",
        messy!("photograph, realistic skin texture, 3d render"),
    ),
    style(
        "cinematic",
        "cinematic still of {prompt}, wide anamorphic frame, dramatic lighting, shallow depth of field, film colour grade",
        messy!("cartoon, flat lighting, amateur snapshot"),
    ),
    style(
        "comic-book",
        "comic book panel of {prompt}, bold ink outlines, halftone shading, punchy flat colours, dynamic pose",
        messy!("photograph, soft focus, realistic"),
    ),
    style(
        "Craft Clay",
        "{prompt} sculpted from coloured craft clay, handmade figurine, fingerprints in the surface, tabletop diorama",
        messy!("photorealistic skin, metal, glossy plastic"),
    ),
    style(
        "modeling-compound",
        "{prompt} made of soft modelling compound, chunky playful shapes, bright matte colours, stop-motion set",
        messy!("realistic, painting, drawing"),
    ),
    style(
        "digital-art",
        "digital painting of {prompt}, rich colours, detailed brushwork, concept art, trending illustration",
        messy!("photograph, low effort sketch"),
    ),
    style(
        "enhance",
        "{prompt}, finely detailed, sharp focus, balanced composition, vibrant yet natural colours, high quality",
        messy!("blurry, low resolution, noisy, deformed"),
    ),
    style(
        "fantasy-art",
        "epic fantasy artwork of {prompt}, magical atmosphere, glowing light, intricate detail, painterly storybook world",
        messy!("modern city, mundane, photograph"),
    ),
    style(
        "isometric",
        "isometric view of {prompt}, tidy miniature scene, 30-degree axonometric angle, crisp edges, clean game art",
        messy!("perspective distortion, fisheye, photograph"),
    ),
    style(
        "line-art",
        "line art drawing of {prompt}, clean confident strokes, black ink on white, no shading, elegant contours",
        messy!("colour fill, photograph, gradients, 3d"),
    ),
    style(
        "low-poly",
        "low poly model of {prompt}, faceted triangles, flat-shaded polygons, simple geometric palette",
        messy!("smooth surfaces, photograph, high detail texture"),
    ),
    style(
        "neon-punk",
        "{prompt} in neon punk style, glowing magenta and cyan lights, rain-slick night streets, high contrast",
        messy!("daylight, pastel, muted colours"),
    ),
    style(
        "origami",
        "{prompt} folded from paper, origami, sharp creases, layered paper planes, soft shadows on a plain table",
        messy!("cloth, plastic, photograph of a real animal"),
    ),
    style(
        "photographic",
        "photograph of {prompt}, natural light, 50mm lens, true-to-life colour, fine detail, professional shot",
        messy!("drawing, painting, cartoon, cgi"),
    ),
    style(
        "pixel-art",
        "pixel art of {prompt}, limited palette, chunky visible pixels, retro sprite, crisp hard edges",
        messy!("smooth gradients, blur, anti-aliasing, photograph"),
    ),
    style(
        "tile-texture",
        "seamless tiling texture of {prompt}, repeating pattern, even lighting, flat top-down view",
        messy!("visible seams, perspective, single object, vignette"),
    ),
    style(
        "Advertising",
        "product advertisement featuring {prompt}, polished commercial lighting, bold clean layout, brand campaign look",
        messy!("cluttered, amateur, dim lighting"),
    ),
    style(
        "Food Photography",
        "appetising food photo of {prompt}, close-up on a styled table, soft window light, shallow depth of field",
        messy!("unappetising, raw mess, harsh flash"),
    ),
    style(
        "Real Estate",
        "real estate listing photo of {prompt}, bright airy interior, wide-angle lens, tidy staged rooms",
        messy!("dark, cluttered, fisheye distortion"),
    ),
    style(
        "Abstract",
        "abstract composition inspired by {prompt}, bold shapes and colour fields, non-figurative, expressive rhythm",
        messy!("literal depiction, photograph, realism"),
    ),
    style(
        "Cubist",
        "cubist painting of {prompt}, fractured planes, several viewpoints at once, geometric facets, earthy palette",
        messy!("photograph, smooth realism, single viewpoint"),
    ),
    style(
        "Graffiti",
        "graffiti mural of {prompt}, spray paint on a brick wall, bold outlines, drips, vibrant street art",
        messy!("clean gallery canvas, photograph, pastel"),
    ),
    style(
        "Hyperrealism",
        "hyperrealistic rendering of {prompt}, every pore and fibre visible, exact lighting, indistinguishable from a photo",
        messy!("stylised, cartoon, painterly strokes"),
    ),
    style(
        "Impressionist",
        "impressionist painting of {prompt}, loose visible brush strokes, dappled light, soft plein-air colours",
        messy!("sharp lines, photograph, digital render"),
    ),
    style(
        "Pointillism",
        "pointillist painting of {prompt}, built from countless small dots of pure colour, luminous optical blending",
        messy!("brush strokes, smooth gradients, photograph"),
    ),
    style(
        "Pop Art",
        "pop art print of {prompt}, bold primary colours, Ben-Day dots, thick outlines, playful mass-media look",
        messy!("muted colours, photograph, subtle shading"),
    ),
    style(
        "Psychedelic",
        "psychedelic artwork of {prompt}, swirling fluorescent patterns, melting shapes, kaleidoscopic colour",
        messy!("monochrome, plain, realistic"),
    ),
    style(
        "Renaissance",
        "Renaissance oil painting of {prompt}, classical composition, chiaroscuro, rich glazes, old master technique",
        messy!("modern objects, cartoon, photograph"),
    ),
    style(
        "Steampunk",
        "steampunk take on {prompt}, brass gears and copper pipes, Victorian machinery, warm sepia light",
        messy!("modern plastic, futuristic neon, minimal"),
    ),
    style(
        "Surrealist",
        "surrealist painting of {prompt}, dreamlike impossible juxtapositions, uncanny calm, precise rendering",
        messy!("ordinary scene, snapshot, cartoon"),
    ),
    style(
        "Typography",
        "typographic design of {prompt}, expressive lettering as the main element, strong layout, graphic poster",
        messy!("illegible letters, cluttered, photograph"),
    ),
    style(
        "Watercolor",
        "watercolour painting of {prompt}, soft washes bleeding into each other, paper texture, light translucent colour",
        messy!("heavy outlines, photograph, digital render"),
    ),
    style(
        "Fighting Game",
        "{prompt} as a fighting game character select screen, dynamic stance, energy effects, arcade versus art",
        messy!("calm, static, photograph"),
    ),
    style(
        "GTA",
        "{prompt} in the style of open-world crime game cover art, saturated sunset colours, bold outlined illustration",
        messy!("photograph, watercolour, muted"),
    ),
    style(
        "Super Mario",
        "{prompt} in a cheerful platform-game world, bright primary colours, round friendly shapes, floating blocks",
        messy!("dark, gritty, realistic"),
    ),
    style(
        "Minecraft",
        "{prompt} built from cubic voxel blocks, blocky sandbox-game world, pixelated textures, square trees",
        messy!("curved surfaces, realistic, smooth"),
    ),
    style(
        "Pokémon",
        "{prompt} as a cute pocket-monster creature, collectible creature-game art, simple bold shapes, bright colours",
        messy!("realistic animal, gore, photograph"),
    ),
    style(
        "Retro Arcade",
        "{prompt} as a retro arcade game screen, glowing CRT scanlines, 8-bit sprites, neon score display",
        messy!("modern graphics, photograph, high resolution textures"),
    ),
    style(
        "Retro Game",
        "{prompt} as a 16-bit console game scene, pixel sprites, side-scrolling level, nostalgic palette",
        messy!("modern 3d, photograph, smooth gradients"),
    ),
    style(
        "RPG Fantasy Game",
        "{prompt} as a fantasy role-playing game scene, heroic adventurers, detailed environment, quest map mood",
        messy!("modern city, sci-fi, photograph"),
    ),
    style(
        "Strategy Game",
        "{prompt} as a strategy game battlefield, top-down overview, readable units and terrain, tactical map",
        messy!("first-person view, close-up portrait, blurry"),
    ),
    style(
        "Street Fighter",
        "{prompt} as a street-brawler arcade fighter, muscular stylised pose, stage backdrop, bold game illustration",
        messy!("peaceful, photograph, muted"),
    ),
    style(
        "Legend of Zelda",
        "{prompt} in a whimsical action-adventure game world, grassy hills, ancient ruins, soft cel-shaded light",
        messy!("urban, modern, photograph"),
    ),
    style(
        "Architectural",
        "architectural visualisation of {prompt}, clean lines, precise perspective, natural materials, daylight render",
        messy!("crooked lines, clutter, fisheye"),
    ),
    style(
        "Disco",
        "{prompt} at a disco, mirror ball sparkles, coloured spotlights, glitter, 1970s dance-floor glamour",
        messy!("daylight, dull, monochrome"),
    ),
    style(
        "Dreamscape",
        "dreamscape of {prompt}, floating soft-focus forms, pastel haze, gentle surreal light, otherworldly calm",
        messy!("harsh, gritty, realistic snapshot"),
    ),
    style(
        "Dystopian",
        "dystopian vision of {prompt}, oppressive concrete towers, smog, cold desaturated light, bleak future",
        messy!("cheerful, bright pastel, utopian"),
    ),
    style(
        "Fairy Tale",
        "fairy tale illustration of {prompt}, enchanted forest, soft magical glow, storybook charm",
        messy!("gritty, horror, modern city"),
    ),
    style(
        "Gothic",
        "gothic scene of {prompt}, pointed arches, candlelight in deep shadow, dark romantic mood, ornate stonework",
        messy!("bright, cheerful, minimal"),
    ),
    style(
        "Grunge",
        "grunge style {prompt}, distressed textures, scratched layers, dirty muted tones, raw rebellious edge",
        messy!("clean, polished, glossy"),
    ),
    style(
        "Horror",
        "horror scene of {prompt}, unsettling shadows, eerie fog, dread-filled atmosphere, cold sickly light",
        messy!("cute, cheerful, bright sunshine"),
    ),
    style(
        "Minimalist",
        "minimalist image of {prompt}, lots of empty space, few simple forms, restrained palette, calm balance",
        messy!("busy, cluttered, ornate"),
    ),
    style(
        "Monochrome",
        "black and white photograph of {prompt}, strong tonal contrast, rich greys, timeless mood",
        messy!("colour, saturated, sepia tint"),
    ),
    style(
        "Nautical",
        "nautical scene of {prompt}, sea spray, weathered ropes and sails, deep blue ocean, maritime light",
        messy!("desert, dry land, urban"),
    ),
    style(
        "Space",
        "{prompt} in outer space, stars and nebulae, weightless drift, cosmic light, vast scale",
        messy!("daytime sky, earthbound landscape, clouds"),
    ),
    style(
        "Stained Glass",
        "stained glass window of {prompt}, jewel-coloured glass panes, dark lead lines, light shining through",
        messy!("photograph, soft gradients, opaque paint"),
    ),
    style(
        "Techwear Fashion",
        "techwear fashion shot of {prompt}, functional black layers, straps and buckles, urban night, editorial pose",
        messy!("casual, colourful, vintage"),
    ),
    style(
        "Tribal",
        "{prompt} in tribal art style, bold repeating motifs, earth pigments, carved and painted patterns",
        messy!("photograph, neon, modern digital"),
    ),
    style(
        "Zentangle",
        "zentangle drawing of {prompt}, intricate repeating ink patterns filling every region, black on white",
        messy!("colour, photograph, empty areas"),
    ),
    style(
        "Collage",
        "mixed-media collage of {prompt}, cut-out magazine pieces, torn paper edges, layered textures",
        messy!("seamless, photograph, single medium"),
    ),
    style(
        "Flat Papercut",
        "flat paper cut-out of {prompt}, single layer of coloured paper, clean scissor edges, simple silhouette shapes",
        messy!("3d depth, photograph, gradients"),
    ),
    style(
        "Kirigami",
        "kirigami of {prompt}, one sheet of paper cut and folded into a delicate pop-up form, crisp white paper",
        messy!("colour print, glue, photograph of real object"),
    ),
    style(
        "Paper Mache",
        "papier-mache sculpture of {prompt}, lumpy layered paper strips, hand-painted surface, crafty charm",
        messy!("smooth plastic, metal, photorealistic"),
    ),
    style(
        "Paper Quilling",
        "paper quilling art of {prompt}, tightly rolled coloured paper strips, spirals and coils, delicate detail",
        messy!("flat print, photograph, paint"),
    ),
    style(
        "Papercut Collage",
        "papercut collage of {prompt}, overlapping shapes cut from patterned papers, soft drop shadows",
        messy!("photograph, airbrushed, single flat layer"),
    ),
    style(
        "Papercut Shadow Box",
        "papercut shadow box of {prompt}, stacked cut-paper layers in a deep frame, backlit depth, silhouettes",
        messy!("flat, photograph, plastic"),
    ),
    style(
        "Stacked Papercut",
        "stacked papercut art of {prompt}, many layers of coloured paper stacked for depth, topographic edges",
        messy!("flat, photograph, paint"),
    ),
    style(
        "Thick Layered Papercut",
        "thick layered papercut of {prompt}, chunky cardstock layers, deep shadows between them, bold shapes",
        messy!("thin paper, flat, photograph"),
    ),
    style(
        "Alien",
        "{prompt} on an alien world, strange biology, unfamiliar skies, bioluminescent plants, science fiction",
        messy!("ordinary, earthly, mundane"),
    ),
    style(
        "Film Noir",
        "film noir still of {prompt}, hard-edged black and white shadows, venetian-blind light, smoky tension",
        messy!("colour, bright, cheerful"),
    ),
    style(
        "HDR",
        "HDR photograph of {prompt}, wide dynamic range, detail in deep shadows and bright highlights, vivid tones",
        messy!("blown highlights, crushed shadows, flat"),
    ),
    style(
        "Long Exposure",
        "long exposure photograph of {prompt}, silky motion blur, light trails, still sharp background",
        messy!("frozen motion, flash, noisy"),
    ),
    style(
        "Neon Noir",
        "neon noir scene of {prompt}, dark city night, neon signs reflected in puddles, moody crime atmosphere",
        messy!("daylight, pastel, cheerful"),
    ),
    style(
        "Silhouette",
        "silhouette of {prompt} against a glowing sky, dark solid shape, strong backlight, clean outline",
        messy!("front lighting, visible facial detail, cluttered"),
    ),
    style(
        "Tilt-Shift",
        "tilt-shift photograph of {prompt}, miniature-model effect, narrow band of focus, high viewpoint, bright colours",
        messy!("everything in focus, ground level view, dull"),
    ),
];
