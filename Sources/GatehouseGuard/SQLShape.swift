import GatehouseCore

/// A SQL text's shape: its tokens as PostgreSQL's scanner reads them, spacing left out, with the value
/// of every constant (number, string, bit string) and the text of every comment left out too. Where a
/// comment is stays in the shape: libpg_query's parser reads `NOT /* */ IN` unlike `NOT IN` (a comment
/// stops the lookahead that joins them), and a statement may start at a comment. When every constant
/// of the text is a constant of its parse tree (`A_Const`), texts of one shape parse to the same tree but
/// for those constants' values and the places of their tokens, so a classification that read no
/// constant's value and points only at token starts holds for all of them
/// (`SQLClassifier.classify(_:shape:)` checks both). An application sending one statement with ever new
/// literals (`WHERE id = 41`, `WHERE id = 42`) is then classified once.
struct SQLShape: Hashable, Sendable {
    /// Each token's kind, followed by its bytes unless it is a constant or a comment: what the memory
    /// keeps (the rest is for the text at hand).
    let key: Key
    /// Where each token (comments included) starts in the text.
    let starts: [Int]
    /// Where each constant starts, and where the `-` before it starts when there is one: PostgreSQL
    /// folds `-5` into one constant placed at its sign.
    let constants: [(start: Int, sign: Int?)]

    /// `Token` numbers in libpg_query's scanner: FCONST, SCONST, BCONST, XCONST, ICONST.
    static let constantKinds: Set<Int> = [260, 261, 263, 264, 266]
    /// USCONST and UIDENT: their escapes may be named by a later `UESCAPE` string.
    static let unicodeKinds: Set<Int> = [259, 262]
    static let minus = Int(UInt8(ascii: "-"))

    /// Nil when the text holds no constant (remembering it by its exact text is enough), holds a NUL
    /// (the scanner would stop there), does not scan, or uses Unicode escapes.
    /// The bytes of a shape, compared and hashed as a whole.
    struct Key: Hashable, Sendable {
        let bytes: [UInt8]

        func hash(into hasher: inout Hasher) {
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }

    init?(_ text: String) {
        guard !text.containsNUL, let tokens = PgQuery.tokens(text, comments: true) else { return nil }
        var key: [UInt8] = []
        var starts: [Int] = []
        starts.reserveCapacity(tokens.count)
        var constants: [(start: Int, sign: Int?)] = []
        let utf8 = Array(text.utf8)
        for (index, token) in tokens.enumerated() {
            guard !Self.unicodeKinds.contains(token.kind) else { return nil }
            Self.append(token.kind, to: &key)
            starts.append(token.start)
            if Self.constantKinds.contains(token.kind) {
                let sign = index > 0 && tokens[index - 1].kind == Self.minus ? tokens[index - 1].start : nil
                constants.append((token.start, sign))
            } else if !ScanTokens.comments.contains(token.kind) {
                Self.append(token.end - token.start, to: &key)
                key.append(contentsOf: utf8[token.start..<token.end])
            }
        }
        guard !constants.isEmpty else { return nil }
        self.key = Key(bytes: key)
        self.starts = starts
        self.constants = constants
    }

    private static func append(_ value: Int, to key: inout [UInt8]) {
        var value = value
        repeat {
            key.append(UInt8(value & 0x7F) | (value > 0x7F ? 0x80 : 0))
            value >>= 7
        } while value > 0
    }

    static func == (lhs: SQLShape, rhs: SQLShape) -> Bool { lhs.key == rhs.key }

    func hash(into hasher: inout Hasher) { key.hash(into: &hasher) }

    // MARK: Positions

    /// The classification with every position made the number of the token it points at (-1: the
    /// text's start, before its first token); nil when a position is neither.
    func relative(_ classification: ActionClassification) -> ActionClassification? {
        var result = classification
        for index in result.findings.indices {
            guard let token = tokenNumber(at: result.findings[index].position) else { return nil }
            result.findings[index].position = token
        }
        for index in result.calls.indices {
            guard let token = tokenNumber(at: result.calls[index].position) else { return nil }
            result.calls[index].position = token
        }
        return result
    }

    /// A classification made `relative` by a text of this shape, with positions in this text.
    func absolute(_ classification: ActionClassification) -> ActionClassification {
        var result = classification
        for index in result.findings.indices { result.findings[index].position = position(of: result.findings[index].position) }
        for index in result.calls.indices { result.calls[index].position = position(of: result.calls[index].position) }
        return result
    }

    private func tokenNumber(at position: Int) -> Int? {
        var low = 0, high = starts.count
        while low < high {
            let middle = (low + high) / 2
            if starts[middle] < position { low = middle + 1 } else { high = middle }
        }
        if low < starts.count, starts[low] == position { return low }
        return position == 0 ? -1 : nil
    }

    private func position(of token: Int) -> Int {
        token >= 0 && token < starts.count ? starts[token] : 0
    }
}
