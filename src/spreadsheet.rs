//! CSV as Dutch spreadsheets open it without an import wizard: UTF-8 with
//! a byte order mark (else Excel reads it as Windows-1252), `;` between
//! fields (the list separator of the Dutch locale, where `,` is the decimal
//! comma), CRLF line ends, and a field quoted as RFC 4180 says when it
//! holds a `;`, a quote or a line break. Used by every CSV ketenpoort
//! serves: the phenomenon tables and the privacy officer's log export.

/// The byte order mark that tells spreadsheets the file is UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The field separator.
pub const SEPARATOR: u8 = b';';

/// A writer with these conventions, the BOM already written.
pub fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .delimiter(SEPARATOR)
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(BOM.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_separator_and_quoting() {
        let mut w = writer();
        w.write_record(["a", "b;c", "d\"e", "f g"]).unwrap();
        let out = w.into_inner().unwrap();
        assert_eq!(out, b"\xEF\xBB\xBFa;\"b;c\";\"d\"\"e\";f g\r\n");
    }
}
