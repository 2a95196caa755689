//! The geometry of the dashboard's charts, in whole pixels from exact values: the templates write
//! it out as SVG (no script, nothing fetched), each chart with a title, a text description and the
//! same figures as a table beside it. Scaling is integer arithmetic on the values' magnitudes, so
//! the same data always draws the same picture.

/// One bar: its label, its figure as text, and where it is drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bar {
    pub label: String,
    pub value: String,
    pub x: u64,
    pub y: u64,
    pub width: u64,
    pub height: u64,
    /// A negative amount (a credit), drawn in another colour.
    pub negative: bool,
}

/// A chart: bars across (categories) or columns up (days).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chart {
    pub id: String,
    pub title: String,
    /// What the chart shows, in words, for screen readers.
    pub description: String,
    pub width: u64,
    pub height: u64,
    pub bars: Vec<Bar>,
    /// Bars across, each labelled (categories), or columns up, labelled at the ends (days).
    pub across: bool,
    /// The largest figure, as text: the top of a column chart's scale.
    pub peak: String,
    /// The plot's left edge (bars) or bottom edge (columns).
    pub axis: u64,
}

/// A value to draw: its label, magnitude, text and sign.
pub(crate) struct Point {
    pub label: String,
    pub magnitude: u128,
    pub value: String,
    pub negative: bool,
}

const BAR_ROW: u64 = 28;
const BAR_THICKNESS: u64 = 18;
const LABEL_WIDTH: u64 = 170;
const PLOT_WIDTH: u64 = 380;

/// Scales `magnitude` of `max` to `span` pixels, at least 1 for anything above zero.
fn scaled(magnitude: u128, max: u128, span: u64) -> u64 {
    if max == 0 || magnitude == 0 {
        return 0;
    }
    // Both halved until the product (and half of `max`, to round to the nearest pixel) fits: the
    // ratio keeps its first hundred-odd bits.
    let (mut magnitude, mut max, span) = (magnitude, max, u128::from(span));
    while max > u128::MAX / (span + 1) {
        magnitude >>= 1;
        max >>= 1;
    }
    u64::try_from((magnitude * span + max / 2) / max).unwrap_or(u64::MAX).max(1)
}

/// The text of the largest point (the first of equals).
fn peak(points: &[Point]) -> String {
    points.iter().rev().max_by_key(|p| p.magnitude).map(|p| p.value.clone()).unwrap_or_default()
}

/// Horizontal bars, one row per point, the longest as wide as the plot.
pub(crate) fn bars(id: &str, title: &str, description: &str, points: Vec<Point>) -> Chart {
    let max = points.iter().map(|p| p.magnitude).max().unwrap_or(0);
    let peak = peak(&points);
    let bars: Vec<Bar> = points
        .into_iter()
        .zip(0u64..)
        .map(|(p, row)| Bar {
            width: scaled(p.magnitude, max, PLOT_WIDTH),
            height: BAR_THICKNESS,
            x: LABEL_WIDTH,
            y: row * BAR_ROW + 6,
            label: p.label,
            value: p.value,
            negative: p.negative,
        })
        .collect();
    let rows = u64::try_from(bars.len()).unwrap_or(u64::MAX).max(1);
    Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        width: LABEL_WIDTH + PLOT_WIDTH + 150,
        height: rows * BAR_ROW + 8,
        bars,
        across: true,
        peak,
        axis: LABEL_WIDTH,
    }
}

const COLUMNS_HEIGHT: u64 = 160;
const COLUMNS_TOP: u64 = 22;

/// Vertical columns, one per point (a day), the tallest as high as the plot.
pub(crate) fn columns(id: &str, title: &str, description: &str, points: Vec<Point>) -> Chart {
    let max = points.iter().map(|p| p.magnitude).max().unwrap_or(0);
    let peak = peak(&points);
    let count = u64::try_from(points.len()).unwrap_or(u64::MAX).max(1);
    let step = (640 / count).clamp(3, 24);
    let bottom = COLUMNS_TOP + COLUMNS_HEIGHT;
    let bars = points
        .into_iter()
        .zip(0u64..)
        .map(|(p, n)| {
            let height = scaled(p.magnitude, max, COLUMNS_HEIGHT);
            Bar {
                x: 40 + n * step,
                y: bottom - height,
                width: (step - 1).max(2),
                height,
                label: p.label,
                value: p.value,
                negative: p.negative,
            }
        })
        .collect();
    Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        width: 40 + count * step + 20,
        height: bottom + 24,
        bars,
        across: false,
        peak,
        axis: bottom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, magnitude: u128) -> Point {
        Point { label: label.to_owned(), magnitude, value: magnitude.to_string(), negative: false }
    }

    #[test]
    fn bars_scale_to_the_largest() {
        let chart = bars("c", "t", "d", vec![point("a", 500), point("b", 1000), point("c", 0), point("d", 1)]);
        let widths: Vec<u64> = chart.bars.iter().map(|b| b.width).collect();
        assert_eq!(widths, vec![PLOT_WIDTH / 2, PLOT_WIDTH, 0, 1], "half, whole, nothing, and a visible sliver");
        assert_eq!(chart.bars[1].y, BAR_ROW + 6);
    }

    #[test]
    fn columns_stand_on_one_axis() {
        let chart = columns("c", "t", "d", vec![point("1", u128::MAX), point("2", u128::MAX / 4)]);
        for bar in &chart.bars {
            assert_eq!(bar.y + bar.height, chart.axis, "{bar:?}");
        }
        assert_eq!(chart.bars[0].height, COLUMNS_HEIGHT, "no overflow at the largest values");
        assert_eq!(chart.bars[1].height, COLUMNS_HEIGHT / 4);
        assert_eq!(chart.peak, u128::MAX.to_string(), "the scale's top is the largest figure");
        assert!(columns("e", "t", "d", Vec::new()).bars.is_empty());
    }
}
