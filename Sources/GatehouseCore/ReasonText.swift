/// How much a reason says, and how alike two reasons are. Pure text functions for the spam score.
public enum ReasonText {
    /// Only the first part of a reason is compared: enough to recognise a copied reason, bounded in cost.
    static let comparedCharacters = 512

    /// Lowercased words of letters and digits (hyphens kept inside words: `inc-4411`).
    public static func words(_ text: String) -> [String] {
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

    /// Character trigrams of the normalised text (words joined by single spaces, padded).
    public static func trigrams(_ text: String) -> Set<String> {
        let normalised = " " + words(String(text.prefix(comparedCharacters))).joined(separator: " ") + " "
        let characters = Array(normalised)
        guard characters.count >= 3 else { return [normalised] }
        var grams = Set<String>()
        for index in 0...(characters.count - 3) {
            grams.insert(String(characters[index..<(index + 3)]))
        }
        return grams
    }

    /// Jaccard similarity of the two texts' trigram sets, 0 (nothing shared) to 1 (same words).
    public static func similarity(_ a: Set<String>, _ b: Set<String>) -> Double {
        guard !a.isEmpty || !b.isEmpty else { return 1 }
        let shared = a.intersection(b).count
        return Double(shared) / Double(a.count + b.count - shared)
    }
}
