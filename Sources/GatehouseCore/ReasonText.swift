/// How much a reason says, and how alike two reasons are. Pure text functions for the spam score.
public enum ReasonText {
    /// Only the first part of a reason is compared: enough to recognise a copied reason, bounded in cost.
    static let comparedCharacters = 512

    /// Lowercased words of letters and digits (hyphens kept inside words: `inc-4411`).
    public static func words(_ text: String) -> [String] {
        asciiWords(text) ?? characterWords(text)
    }

    /// `words` for an ASCII text, byte by byte (the score reads hundreds of reasons per request; walking
    /// them by grapheme cluster was most of its cost). Nil for any other text. The same words as
    /// `characterWords`: in ASCII, only A-Z and a-z are letters and only 0-9 are numbers.
    static func asciiWords(_ text: String) -> [String]? {
        var text = text
        return text.withUTF8 { bytes -> [String]? in
            guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
            var words: [String] = []
            var current: [UInt8] = []
            current.reserveCapacity(32)
            func finish() {
                if current.last == UInt8(ascii: "-") { current.removeLast() }
                words.append(String(decoding: current, as: UTF8.self))
                current.removeAll(keepingCapacity: true)
            }
            for byte in bytes {
                let lower = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
                if (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(lower) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(lower)
                    || (lower == UInt8(ascii: "-") && !current.isEmpty) {
                    current.append(lower)
                } else if !current.isEmpty {
                    finish()
                }
            }
            if !current.isEmpty { finish() }
            return words
        }
    }

    /// `words` for any text, by grapheme cluster.
    static func characterWords(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        for character in text.lowercased() {
            if character.isLetter || character.isNumber || (character == "-" && !current.isEmpty) {
                current.append(character)
            } else if !current.isEmpty {
                words.append(current)
                current = ""
            }
        }
        if !current.isEmpty { words.append(current) }
        return words.map { $0.hasSuffix("-") ? String($0.dropLast()) : $0 }
    }

    /// Words that carry no information about why access is needed.
    static let filler: Set<String> = [
        "a", "an", "the", "i", "me", "my", "we", "us", "our", "to", "for", "of", "on", "in", "at", "it", "is", "be",
        "and", "or", "with", "this", "that", "some", "just", "pls", "plz", "please", "thanks", "thx", "need", "needs",
        "needed", "want", "access", "request", "requesting", "give", "get", "grant", "urgent", "asap", "now", "quick",
        "test", "testing", "tmp", "temp", "stuff", "thing", "things", "work", "do", "doing", "again", "ok", "okay",
        "yes", "no", "n", "na", "tbd", "todo", "xxx", "foo", "bar", "baz", "asdf", "qwer", "qwerty", "zxcv",
        "hello", "hi", "help", "fix", "issue", "problem", "prod", "db", "database", "server",
        "approve", "approval", "approved", "allow", "ticket",
    ]

    /// Words that tell an approver something: not filler, not a single repeated character.
    public static func informativeWords(_ text: String) -> Set<String> {
        Set(words(text).filter { word in
            word.count >= 2 && !filler.contains(word) && Set(word).count > 1
        })
    }

    /// "need access", "asdf", "test": fewer than three informative words.
    public static func isLowInformation(_ text: String) -> Bool {
        informativeWords(text).count < 3
    }

    /// Character trigrams of the normalised text (words joined by single spaces, padded), each packed
    /// into one integer (three 21-bit scalars): comparing reasons is on the path of every request.
    public static func trigrams(_ text: String) -> Set<UInt64> {
        let normalised = " " + words(String(text.prefix(comparedCharacters))).joined(separator: " ") + " "
        let scalars = normalised.unicodeScalars.map { UInt64($0.value) }
        var grams = Set<UInt64>(minimumCapacity: scalars.count)
        guard scalars.count >= 3 else { return [scalars.reduce(0) { $0 << 21 | $1 }] }
        for index in 0...(scalars.count - 3) {
            grams.insert(scalars[index] << 42 | scalars[index + 1] << 21 | scalars[index + 2])
        }
        return grams
    }

    /// Jaccard similarity of the two texts' trigram sets, 0 (nothing shared) to 1 (same words).
    public static func similarity(_ a: Set<UInt64>, _ b: Set<UInt64>) -> Double {
        guard !a.isEmpty || !b.isEmpty else { return 1 }
        let shared = a.intersection(b).count
        return Double(shared) / Double(a.count + b.count - shared)
    }
}
