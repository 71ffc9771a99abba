import Foundation

/// libpg_query's PL/pgSQL parser compiles a body without the database's catalog, so it refuses some
/// valid bodies for want of types: every use of a cursor variable ("must be of type cursor or
/// refcursor"), `RETURN NEXT;` in a function with OUT or TABLE parameters ("missing expression"), an
/// assignment to a field of a row or record variable ("r.x is not a known variable"), `COLLATE`
/// in a declaration, and `ALIAS FOR $1` of an unnamed parameter ("variable $1 does not exist"). This rewrite turns exactly those constructs into ones it reads, keeping every
/// expression and query of the body, so the body can still be classified by what it does:
///
/// - `OPEN c FOR query` → `query` (`OPEN c FOR EXECUTE ...` → `EXECUTE ...`); `OPEN c(args)` →
///   `PERFORM args`; `OPEN c`, `CLOSE c`, `FETCH ... c INTO ...`, `MOVE ... c` → `NULL` (a FETCH or
///   MOVE is rewritten only when it holds nothing but direction words, numbers and names);
/// - `FOR r IN c(args) LOOP` → `FOR r IN SELECT args LOOP` (a bound cursor's query was read where it was declared);
/// - `RETURN NEXT;` → `RETURN NEXT NULL;`;
/// - `r.x := e` → `r := e`;
/// - `COLLATE name` in a DECLARE section is dropped; `k ALIAS FOR $1` (an unnamed parameter) declares `k int`.
///
/// `c` must be declared in the body as a cursor (`c CURSOR ...`, `c refcursor`). Anything it is not
/// sure of (named cursor arguments, a FETCH with an expression) leaves the body as it was, and the
/// classifier fails closed on the parser's error as before.
enum PlpgsqlRewrite {
    /// `source` (a `CREATE FUNCTION` or `DO` statement) with its body, which must be `body`,
    /// rewritten; nil when nothing applies or the body cannot be found.
    static func source(_ source: String, body: String) -> String? {
        guard let rewritten = rewrite(body), rewritten != body, let tokens = PgQuery.tokens(source) else { return nil }
        let bytes = Array(source.utf8)
        for token in tokens where stringContent(bytes[token.start..<token.end]) == body {
            let tag = PgQuery.dollarTag(avoiding: rewritten)
            return String(decoding: bytes[..<token.start], as: UTF8.self) + tag + rewritten + tag
                + String(decoding: bytes[token.end...], as: UTF8.self)
        }
        return nil
    }

    /// The body with the constructs above rewritten; nil when the body does not scan or holds one it
    /// cannot rewrite safely.
    static func rewrite(_ body: String) -> String? {
        guard let tokens = PgQuery.tokens(body) else { return nil }
        let bytes = Array(body.utf8)
        let words = tokens.map { String(decoding: bytes[$0.start..<$0.end], as: UTF8.self) }
        let lower = words.map { $0.lowercased() }
        func word(_ index: Int) -> String { index < lower.count ? lower[index] : "" }
        func name(_ index: Int) -> String? {
            guard index < words.count, isName(words[index]) else { return nil }
            let text = words[index]
            return text.hasPrefix("\"") ? String(text.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"") : text.lowercased()
        }
        var cursors = Set<String>()
        for index in lower.indices where lower[index] == "cursor" || lower[index] == "refcursor" {
            var before = index - 1
            if lower[index] == "cursor" { while before >= 0, ["scroll", "no"].contains(lower[before]) { before -= 1 } }
            if before >= 0, let declared = name(before) { cursors.insert(declared) }
        }
        func isCursor(_ index: Int) -> Bool { name(index).map(cursors.contains) ?? false }
        let directions: Set<String> = ["next", "prior", "first", "last", "absolute", "relative", "forward", "backward", "all",
                                       "from", "in", "into", "strict", ",", ".", "-"]
        // What the scans below ask, worked out once for every token: looked for anew at each FETCH, MOVE,
        // FOR or OPEN, a body of thousands of them took quadratic time. `next...[i]`: the first such token at
        // or after i; `...Before[i]`: how many tokens before i are such.
        var nextSemicolon = [Int?](repeating: nil, count: lower.count + 1)
        var nextInOrSemicolon = [Int?](repeating: nil, count: lower.count + 1)
        for index in lower.indices.reversed() {
            nextSemicolon[index] = lower[index] == ";" ? index : nextSemicolon[index + 1]
            nextInOrSemicolon[index] = lower[index] == "in" || lower[index] == ";" ? index : nextInOrSemicolon[index + 1]
        }
        var cursorsBefore = [0], loopsBefore = [0], fetchWordsBefore = [0], namedArgumentsBefore = [0]
        for index in lower.indices {
            cursorsBefore.append(cursorsBefore[index] + (isCursor(index) ? 1 : 0))
            loopsBefore.append(loopsBefore[index] + (lower[index] == "loop" ? 1 : 0))
            let fetchWord = directions.contains(lower[index]) || name(index) != nil || Int(lower[index]) != nil
            fetchWordsBefore.append(fetchWordsBefore[index] + (fetchWord ? 1 : 0))
            namedArgumentsBefore.append(namedArgumentsBefore[index] + (lower[index] == ":=" || lower[index] == "=>" ? 1 : 0))
        }
        func count(_ before: [Int], _ range: Range<Int>) -> Int { range.isEmpty ? 0 : before[range.upperBound] - before[range.lowerBound] }
        var closing = [Int?](repeating: nil, count: lower.count)
        var opened: [Int] = []
        for index in lower.indices {
            if lower[index] == "(" { opened.append(index) }
            if lower[index] == ")", let open = opened.popLast() { closing[open] = index }
        }
        /// The index of the `)` closing the `(` at `open`, and whether the arguments between are positional.
        func arguments(_ open: Int) -> (close: Int, positional: Bool)? {
            guard open < lower.count, lower[open] == "(", let close = closing[open] else { return nil }
            return (close, count(namedArgumentsBefore, open..<close + 1) == 0)
        }

        var edits: [(first: Int, last: Int, text: String)] = []
        var declaring = false
        var index = 0
        while index < lower.count {
            // A statement starts after `;`, a block or branch keyword, or a label (`<<name>>`; a `>>` that
            // is an operator inside a statement starts nothing).
            let label = index >= 3 && lower[index - 1] == ">>" && lower[index - 3] == "<<" && name(index - 2) != nil
            let start = index == 0 || label || [";", "begin", "loop", "then", "else", "declare"].contains(lower[index - 1])
            switch lower[index] {
            case "declare": declaring = true
            case "begin": declaring = false
            case "alias" where declaring && word(index + 1) == "for" && word(index + 2).hasPrefix("$"):
                // `k ALIAS FOR $1`: the parser knows no positional parameters; a plain variable reads alike.
                edits.append((index, index + 2, "int"))
                index += 2
            case "collate" where declaring:
                var last = index + 1
                while word(last + 1) == ".", name(last + 2) != nil { last += 2 }
                guard name(last) != nil else { return nil }
                edits.append((index, last, ""))
                index = last
            default: break
            }
            guard start else { index += 1; continue }
            switch lower[index] {
            case "open" where isCursor(index + 1):
                var next = index + 2
                if word(next) == ";" {
                    edits.append((index, index + 1, "NULL"))
                } else if word(next) == "(" {
                    guard let (close, positional) = arguments(next), positional, word(close + 1) == ";" else { return nil }
                    edits.append((index, next, "PERFORM "))
                    edits.append((close, close, ""))
                } else {
                    while ["no", "scroll"].contains(word(next)) { next += 1 }
                    guard word(next) == "for" else { return nil }
                    edits.append((index, next, ""))
                }
            case "fetch", "move":
                guard let end = nextSemicolon[index] else { return nil }
                guard count(cursorsBefore, index + 1..<end) > 0 else { break }
                guard count(fetchWordsBefore, index + 1..<end) == end - index - 1 else { return nil }
                edits.append((index, end - 1, "NULL"))
            case "close" where isCursor(index + 1) && word(index + 2) == ";":
                edits.append((index, index + 1, "NULL"))
            case "for":
                // The loop's IN comes before the statement's end.
                guard let found = nextInOrSemicolon[index], lower[found] == "in",
                      count(loopsBefore, index..<found) == 0, isCursor(found + 1) else { break }
                let cursor = found + 1
                if word(cursor + 1) == "loop" {
                    edits.append((cursor, cursor, "SELECT 1"))
                } else if word(cursor + 1) == "(" {
                    guard let (close, positional) = arguments(cursor + 1), positional, word(close + 1) == "loop" else { return nil }
                    edits.append((cursor, cursor + 1, "SELECT "))
                    edits.append((close, close, ""))
                }
            case "return" where word(index + 1) == "next" && word(index + 2) == ";":
                edits.append((index + 1, index + 1, "NEXT NULL"))
            default:
                // `r.x := e` (or `=`): an assignment to a field.
                var last = index
                while word(last + 1) == ".", name(last + 2) != nil { last += 2 }
                if last > index, name(index) != nil, [":=", "="].contains(word(last + 1)) {
                    edits.append((index, last, words[index]))
                }
            }
            index += 1
        }
        guard !edits.isEmpty else { return nil }
        var out: [UInt8] = []
        var copied = 0
        for edit in edits.sorted(by: { $0.first < $1.first }) {
            let from = tokens[edit.first].start
            guard from >= copied else { return nil }
            out += bytes[copied..<from]
            out += Array(edit.text.utf8)
            copied = tokens[edit.last].end
        }
        out += bytes[copied...]
        return String(decoding: out, as: UTF8.self)
    }

    /// The default expression of every variable declared in `body`'s DECLARE sections (`x int := e`,
    /// `= e`, `DEFAULT e`; cursor declarations, whose queries the parser shows, left out). A body that
    /// does not scan has none (its parse fails, and the classifier fails closed on that).
    static func declarationDefaults(_ body: String) -> [String] {
        guard let tokens = PgQuery.tokens(body) else { return [] }
        let bytes = Array(body.utf8)
        let lower = tokens.map { String(decoding: bytes[$0.start..<$0.end], as: UTF8.self).lowercased() }
        var defaults: [String] = []
        var declaring = false
        var index = 0
        while index < lower.count {
            switch lower[index] {
            case "declare": declaring = true
            case "begin": declaring = false
            default:
                guard declaring else { break }
                var depth = 0
                var end = index
                var assignment: Int?
                while end < lower.count, depth > 0 || lower[end] != ";" {
                    if lower[end] == "(" { depth += 1 } else if lower[end] == ")" { depth -= 1 }
                    if depth == 0, assignment == nil, [":=", "=", "default"].contains(lower[end]) { assignment = end }
                    end += 1
                }
                if let assignment, assignment + 1 < end, !lower[index..<end].contains("cursor") {
                    defaults.append(String(decoding: bytes[tokens[assignment + 1].start..<tokens[end - 1].end], as: UTF8.self))
                }
                index = end
            }
            index += 1
        }
        return defaults
    }

    /// The names `body`'s DECLARE sections give with `name ALIAS FOR $1` (or another name): values, as the
    /// variable or parameter they stand for, though no declaration in the parse tree carries them.
    static func aliasNames(_ body: String) -> Set<String> {
        guard let tokens = PgQuery.tokens(body) else { return [] }
        let bytes = Array(body.utf8)
        let texts = tokens.map { String(decoding: bytes[$0.start..<$0.end], as: UTF8.self) }
        var names: Set<String> = []
        for index in texts.indices.dropLast(2) where texts[index + 1].lowercased() == "alias" && texts[index + 2].lowercased() == "for" {
            let name = texts[index]
            guard isName(name) else { continue }
            names.insert(name.hasPrefix("\"") ? String(name.dropFirst().dropLast()) : name.lowercased())
        }
        return names
    }

    /// A plain or quoted identifier (keywords included: the caller knows where a name must be).
    static func isName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first else { return false }
        if first == "\"" { return text.count >= 2 && text.hasSuffix("\"") }
        return (CharacterSet.letters.contains(first) || first == "_")
            && text.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "$" }
    }

    /// What a string token holds: `$tag$...$tag$` or `'...'`; nil for other tokens (and E'' strings).
    static func stringContent(_ token: ArraySlice<UInt8>) -> String? {
        let text = String(decoding: token, as: UTF8.self)
        if text.hasPrefix("$"), let tagEnd = text.dropFirst().firstIndex(of: "$") {
            let tag = text[...tagEnd]
            guard text.count >= 2 * tag.count, text.hasSuffix(tag) else { return nil }
            return String(text.dropFirst(tag.count).dropLast(tag.count))
        }
        if text.hasPrefix("'"), text.hasSuffix("'"), text.count >= 2 {
            return String(text.dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'")
        }
        return nil
    }
}
