//! Text in the pictures runner draws (reports, previews): the embedded
//! font, and labels cut to fit.

use std::sync::Once;

use plotters::style::FontStyle;

/// Register the embedded DejaVu Sans (regular and bold) as plotters'
/// "sans-serif", once: pictures look the same on every machine and need no
/// system fonts.
pub fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid; a failure would only lose the labels.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// `text` cut to at most `max` characters for a picture's label, its last
/// one `…` when cut, so a cut name does not pass for a whole one.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars()
        .take(max.saturating_sub(1))
        .chain(std::iter::once('…'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_label_ends_in_an_ellipsis() {
        assert_eq!(clip("breakfast_burrito", 16), "breakfast_burri…");
        assert_eq!(clip("beignets", 16), "beignets");
        assert_eq!(clip("sixteen_chars_ok", 16), "sixteen_chars_ok");
        assert_eq!(clip("crème_brûlée", 6), "crème…");
    }
}
