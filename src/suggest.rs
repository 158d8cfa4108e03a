//! Words for messages: "did you mean ...?" for misspelt keys, kinds and names, and long
//! lists cut short.

/// `items` for a message: all of a few, else the first five and how many more, with
/// `more` (where the rest are, which is last) in brackets (a list of 500,000 boundaries
/// made a 3.9 MB warning, 150 runs a 13 kB line).
pub fn first_few(items: &[String], more: impl FnOnce() -> String) -> String {
    const SHOWN: usize = 5;
    if items.len() <= SHOWN + 1 {
        return items.join(", ");
    }
    format!("{}, ... and {} more ({})", items[..SHOWN].join(", "), items.len() - SHOWN, more())
}

/// The closest of `candidates` to `word`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        // A word that extends a candidate ("cosine" for "cos") counts as one edit away.
        .map(|c| {
            let prefix = !word.is_empty() && !c.is_empty() && (word.starts_with(c) || c.starts_with(word));
            (if prefix { 1 } else { strsim::damerau_levenshtein(word, c) }, c)
        })
        .filter(|&(d, c)| d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_only_close_words() {
        assert_eq!(did_you_mean("decay_step", ["decay_steps", "decay_rate"]), Some("decay_steps"));
        assert_eq!(did_you_mean("cosine_decy", ["cosine_decay", "constant"]), Some("cosine_decay"));
        assert_eq!(did_you_mean("stp", ["step", "epoch", "lr0"]), Some("step"));
        assert_eq!(did_you_mean("cosine", ["cos", "linear"]), Some("cos"));
        assert_eq!(did_you_mean("banana", ["cosine_decay", "constant"]), None);
    }
}
