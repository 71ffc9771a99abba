// Over 400 lines on purpose: one POSIX shell tokenizer (quotes, escapes, expansions, operators,
// here-documents), which is easier to check against the standard as one piece.
/// One word of a command line after quote removal, as a POSIX shell would pass it to a program.
struct ShellWord: Sendable, Equatable {
    var text: String
    /// Byte offset of the word's first character in the command line.
    var position: Int
    /// The word contains an unquoted or double-quoted expansion (`$VAR`, `$(...)`, backticks), so
    /// its value is only known when the shell runs.
    var expands = false
    /// Some part of the word was quoted (quoted words are never keywords or globs).
    var quoted = false
    /// The word has an unquoted `*`, `?`, `[` or `{`: the shell may make other words of it (a glob, a brace
    /// expansion `{a,b}`).
    var globs = false
    /// The word has an expansion outside double quotes (`$X`, `$(...)`, backticks): the shell splits its value
    /// into words at blanks.
    var splits = false

    /// The shell may make several words of it (an unquoted expansion, a glob, a brace expansion): what comes
    /// after it in a command is not known from the text. (`"$X"` stays one word.)
    var mayBeSeveral: Bool { splits || globs }
}

struct ShellRedirection: Sendable, Equatable {
    var op: String
    var target: ShellWord
}

/// A simple command: its words, redirections and where it sits in a pipeline.
struct ShellCommand: Sendable, Equatable {
    var words: [ShellWord] = []
    var redirections: [ShellRedirection] = []
    /// Text fed to the command's standard input by a here-document or here-string.
    var input: String?
    /// The shell completes `input` when it runs: a here-string with an expansion, or a here-document whose
    /// delimiter is unquoted and whose body has `$` or a backtick.
    var inputExpands = false
    /// `|&`: the command's error output goes into the pipe too.
    var pipesErrors = false
    var pipeline: Int = 0
    var stage: Int = 0
    var position: Int = 0
}

/// A command line split as `sh` splits it: quotes, escapes, operators, substitutions.
struct ShellScript: Sendable {
    var commands: [ShellCommand] = []
    /// Command substitutions and process substitutions (`$(...)`, backticks, `<(...)`), with the
    /// index of the command they appear in.
    var substitutions: [(text: String, position: Int, command: Int, process: Bool)] = []
}

struct ShellSyntaxError: Error, Equatable {
    var message: String
    var position: Int
}

/// Splits a command line into commands and words.
///
/// Covers what decides which programs run with which arguments: `'...'`, `"..."` with its escapes,
/// `$'...'`, backslashes, `;` `&` `&&` `||` `|` `|&` newlines, parentheses and braces, `$(...)`,
/// backticks, `<(...)` and `>(...)`, `$((...))`, `${...}`, redirections, here-documents and
/// here-strings, and comments. It does not expand variables, globs or aliases.
struct ShellLexer {
    private let bytes: [UInt8]
    private var index = 0
    private var script = ShellScript()
    private var command = ShellCommand()
    private var pipeline = 0
    private var stage = 0
    private var pendingHereDocuments: [(delimiter: String, strip: Bool, command: Int, quoted: Bool)] = []

    static func split(_ text: String) throws(ShellSyntaxError) -> ShellScript {
        var lexer = ShellLexer(bytes: Array(text.utf8))
        try lexer.run()
        return lexer.script
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private func peek(_ offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private mutating func run() throws(ShellSyntaxError) {
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                index += 1
            case UInt8(ascii: "\n"):
                index += 1
                endCommand(endsPipeline: true)
                try readHereDocuments()
            case UInt8(ascii: "#"):
                while let next = peek(), next != UInt8(ascii: "\n") { index += 1 }
            case UInt8(ascii: ";"), UInt8(ascii: "("), UInt8(ascii: ")"):
                index += 1
                endCommand(endsPipeline: true)
            case UInt8(ascii: "&"):
                if peek(1) == UInt8(ascii: ">") {
                    try redirection()
                } else {
                    index += peek(1) == UInt8(ascii: "&") ? 2 : 1
                    endCommand(endsPipeline: true)
                }
            case UInt8(ascii: "|"):
                if peek(1) == UInt8(ascii: "|") {
                    index += 2
                    endCommand(endsPipeline: true)
                } else {
                    if peek(1) == UInt8(ascii: "&") { command.pipesErrors = true }
                    index += peek(1) == UInt8(ascii: "&") ? 2 : 1
                    endCommand(endsPipeline: false)
                }
            case UInt8(ascii: "<"), UInt8(ascii: ">"):
                if peek(1) == UInt8(ascii: "(") {
                    try word()
                } else {
                    try redirection()
                }
            default:
                if isDigit(byte), let fdEnd = digitsThenRedirect() {
                    index = fdEnd
                    try redirection()
                } else {
                    try word()
                }
            }
        }
        endCommand(endsPipeline: true)
        if let pending = pendingHereDocuments.first {
            throw ShellSyntaxError(message: "here-document ended by \(pending.delimiter) has no end line", position: bytes.count)
        }
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// `2>file`: digits directly followed by a redirection operator.
    private func digitsThenRedirect() -> Int? {
        var end = index
        while end < bytes.count, isDigit(bytes[end]) { end += 1 }
        guard end < bytes.count, bytes[end] == UInt8(ascii: ">") || bytes[end] == UInt8(ascii: "<") else { return nil }
        guard end + 1 >= bytes.count || bytes[end + 1] != UInt8(ascii: "(") else { return nil }
        return end
    }

    private mutating func endCommand(endsPipeline: Bool) {
        if !command.words.isEmpty || !command.redirections.isEmpty {
            command.pipeline = pipeline
            command.stage = stage
            script.commands.append(command)
            stage += 1
        }
        command = ShellCommand()
        if endsPipeline {
            pipeline += 1
            stage = 0
        }
    }

    private mutating func redirection() throws(ShellSyntaxError) {
        let start = index
        var op = ""
        while let byte = peek(), byte == UInt8(ascii: "<") || byte == UInt8(ascii: ">") || byte == UInt8(ascii: "&") || byte == UInt8(ascii: "|") || byte == UInt8(ascii: "-") {
            if byte == UInt8(ascii: "|"), op != ">" { break }
            if byte == UInt8(ascii: "-"), op != "<<" { break }
            op.append(Character(Unicode.Scalar(byte)))
            index += 1
            if op.count >= 3 { break }
        }
        while peek() == UInt8(ascii: " ") || peek() == UInt8(ascii: "\t") { index += 1 }
        guard let next = peek(), ![UInt8(ascii: "\n"), UInt8(ascii: ";"), UInt8(ascii: "|"), UInt8(ascii: "&")].contains(next) else {
            throw ShellSyntaxError(message: "redirection `\(op)` has no target", position: start)
        }
        let before = command.words.count
        try word()
        guard command.words.count > before else {
            throw ShellSyntaxError(message: "redirection `\(op)` has no target", position: start)
        }
        let target = command.words.removeLast()
        if op == "<<" || op == "<<-" {
            pendingHereDocuments.append((target.text, op == "<<-", script.commands.count, target.quoted))
        } else if op == "<<<" {
            command.input = target.text
            command.inputExpands = target.expands
        }
        command.redirections.append(ShellRedirection(op: op, target: target))
    }

    private mutating func readHereDocuments() throws(ShellSyntaxError) {
        while !pendingHereDocuments.isEmpty {
            let document = pendingHereDocuments.removeFirst()
            var body = ""
            var found = false
            while index < bytes.count {
                var end = index
                while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
                var line = String(decoding: bytes[index..<end], as: UTF8.self)
                index = min(end + 1, bytes.count)
                if document.strip { line = String(line.drop(while: { $0 == "\t" })) }
                if line == document.delimiter { found = true; break }
                body += line + "\n"
            }
            guard found else {
                throw ShellSyntaxError(message: "here-document ended by \(document.delimiter) has no end line", position: bytes.count)
            }
            if document.command < script.commands.count {
                // Unquoted, the body is read as in double quotes: `\$`, `\``, `\\` stand for the character, `\` and a
                // newline join two lines.
                script.commands[document.command].input = document.quoted ? body : Self.unescaped(body)
                script.commands[document.command].inputExpands = !document.quoted && Self.expands(body)
            }
        }
    }

    /// The body of an unquoted here-document as the command reads it when nothing in it expands.
    static func unescaped(_ body: String) -> String {
        let bytes = Array(body.utf8)
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count, "$`\\\n".utf8.contains(bytes[index + 1]) {
                if bytes[index + 1] != UInt8(ascii: "\n") { out.append(bytes[index + 1]) }
                index += 2
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether the body of an unquoted here-document has an expansion: a backtick, or `$` before a name, a digit,
    /// a special parameter, `{` or `(`, not after a backslash (`\$`, `'$%'` and a lone `$` stay as written).
    static func expands(_ body: String) -> Bool {
        let bytes = Array(body.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                index += 2
                continue
            }
            if byte == UInt8(ascii: "`") { return true }
            if byte == UInt8(ascii: "$"), index + 1 < bytes.count {
                let next = bytes[index + 1]
                if next.isASCIILetterOrDigit || "_{([@*#?$!-".utf8.contains(next) { return true }
            }
            index += 1
        }
        return false
    }

    private func isWordEnd(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: ";"), UInt8(ascii: "&"),
             UInt8(ascii: "|"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "<"), UInt8(ascii: ">"):
            true
        default:
            false
        }
    }

    private mutating func word() throws(ShellSyntaxError) {
        var text: [UInt8] = []
        var word = ShellWord(text: "", position: index)
        loop: while let byte = peek() {
            switch byte {
            case UInt8(ascii: "'"):
                word.quoted = true
                let start = index
                index += 1
                while let next = peek(), next != UInt8(ascii: "'") { text.append(next); index += 1 }
                guard peek() != nil else { throw ShellSyntaxError(message: "unterminated single quote", position: start) }
                index += 1
            case UInt8(ascii: "\""):
                word.quoted = true
                try doubleQuoted(into: &text, word: &word)
            case UInt8(ascii: "\\"):
                index += 1
                if let next = peek() {
                    // An escaped character is quoted (`<<\EOF` is a quoted delimiter); a line joined is not.
                    if next != UInt8(ascii: "\n") {
                        text.append(next)
                        word.quoted = true
                    }
                    index += 1
                }
            case UInt8(ascii: "$"):
                try dollar(into: &text, word: &word, inQuotes: false)
            case UInt8(ascii: "`"):
                try backtick(into: &text, word: &word)
            case UInt8(ascii: "<"), UInt8(ascii: ">"):
                guard peek(1) == UInt8(ascii: "("), text.isEmpty else { break loop }
                let start = index
                index += 1
                let inner = try balanced(open: UInt8(ascii: "("), close: UInt8(ascii: ")"), start: start)
                script.substitutions.append((inner, start, script.commands.count, true))
                word.expands = true
                text.append(contentsOf: Array("<(...)".utf8))
            default:
                if isWordEnd(byte) { break loop }
                if "*?[{".utf8.contains(byte) { word.globs = true }
                text.append(byte)
                index += 1
            }
        }
        word.text = String(decoding: text, as: UTF8.self)
        if word.text.isEmpty && !word.quoted && !word.expands { return }
        if command.words.isEmpty { command.position = word.position }
        command.words.append(word)
    }

    private mutating func doubleQuoted(into text: inout [UInt8], word: inout ShellWord) throws(ShellSyntaxError) {
        let start = index
        index += 1
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return
            case UInt8(ascii: "\\"):
                if let next = peek(1), [UInt8(ascii: "$"), UInt8(ascii: "`"), UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "\n")].contains(next) {
                    if next != UInt8(ascii: "\n") { text.append(next) }
                    index += 2
                } else {
                    text.append(byte)
                    index += 1
                }
            case UInt8(ascii: "$"):
                try dollar(into: &text, word: &word, inQuotes: true)
            case UInt8(ascii: "`"):
                try backtick(into: &text, word: &word, inQuotes: true)
            default:
                text.append(byte)
                index += 1
            }
        }
        throw ShellSyntaxError(message: "unterminated double quote", position: start)
    }

    private mutating func dollar(into text: inout [UInt8], word: inout ShellWord, inQuotes: Bool) throws(ShellSyntaxError) {
        let start = index
        switch peek(1) {
        case UInt8(ascii: "("):
            if peek(2) == UInt8(ascii: "(") {
                index += 2
                _ = try balanced(open: UInt8(ascii: "("), close: UInt8(ascii: ")"), start: start)
                guard peek() == UInt8(ascii: ")") else { throw ShellSyntaxError(message: "unterminated $((", position: start) }
                index += 1
                word.expands = true
                if !inQuotes { word.splits = true }
                text.append(contentsOf: Array("$((...))".utf8))
            } else {
                index += 1
                let inner = try balanced(open: UInt8(ascii: "("), close: UInt8(ascii: ")"), start: start)
                script.substitutions.append((inner, start, script.commands.count, false))
                word.expands = true
                if !inQuotes { word.splits = true }
                text.append(contentsOf: Array("$(...)".utf8))
            }
        case UInt8(ascii: "{"):
            index += 1
            let inner = try balanced(open: UInt8(ascii: "{"), close: UInt8(ascii: "}"), start: start)
            word.expands = true
                if !inQuotes { word.splits = true }
            text.append(contentsOf: Array("${\(inner)}".utf8))
        case UInt8(ascii: "'") where !inQuotes:
            index += 2
            try ansiC(into: &text, start: start)
            word.quoted = true
        case let next? where next == UInt8(ascii: "_") || next.isASCIILetterOrDigit || "@*#?$!-".utf8.contains(next):
            index += 1
            text.append(UInt8(ascii: "$"))
            if next.isASCIILetterOrDigit || next == UInt8(ascii: "_") {
                while let byte = peek(), byte.isASCIILetterOrDigit || byte == UInt8(ascii: "_") { text.append(byte); index += 1 }
            } else {
                text.append(next)
                index += 1
            }
            word.expands = true
                if !inQuotes { word.splits = true }
        default:
            text.append(UInt8(ascii: "$"))
            index += 1
        }
    }

    /// `$'...'`: bash's ANSI-C quoting, decoded so `$'\x72m'` and `$'\u0072m'` are seen as `rm`. As bash does, the
    /// quote ends at the first `'` not after a backslash, and then its text is decoded; a zero byte ends the
    /// word's text there (`$'rm\0x'` is `rm`: bash's words are C strings).
    private mutating func ansiC(into text: inout [UInt8], start: Int) throws(ShellSyntaxError) {
        let from = index
        while let byte = peek(), byte != UInt8(ascii: "'") {
            index += byte == UInt8(ascii: "\\") ? 2 : 1
        }
        guard index < bytes.count else { throw ShellSyntaxError(message: "unterminated $' quote", position: start) }
        let content = Array(bytes[from..<index])
        index += 1
        var decoded: [UInt8] = []
        var at = 0
        while at < content.count {
            if content[at] == UInt8(ascii: "\\"), case .next(let end)? = BackslashEscapes.ansiC.decode(content, backslash: at, into: &decoded) {
                at = end
            } else {
                decoded.append(content[at])
                at += 1
            }
        }
        text.append(contentsOf: decoded.prefix { $0 != 0 })
    }

    private mutating func backtick(into text: inout [UInt8], word: inout ShellWord, inQuotes: Bool = false) throws(ShellSyntaxError) {
        let start = index
        index += 1
        var inner: [UInt8] = []
        while let byte = peek() {
            index += 1
            if byte == UInt8(ascii: "`") {
                script.substitutions.append((String(decoding: inner, as: UTF8.self), start, script.commands.count, false))
                word.expands = true
                if !inQuotes { word.splits = true }
                text.append(contentsOf: Array("`...`".utf8))
                return
            }
            if byte == UInt8(ascii: "\\"), let next = peek() {
                inner.append(next)
                index += 1
                continue
            }
            inner.append(byte)
        }
        throw ShellSyntaxError(message: "unterminated backtick", position: start)
    }

    /// Reads from an opening bracket at `index` to its match, skipping quoted text; returns the inside.
    private mutating func balanced(open: UInt8, close: UInt8, start: Int) throws(ShellSyntaxError) -> String {
        guard peek() == open else { throw ShellSyntaxError(message: "expected a bracket", position: index) }
        index += 1
        let innerStart = index
        var depth = 1
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "'"):
                index += 1
                while let next = peek(), next != UInt8(ascii: "'") { index += 1 }
            case UInt8(ascii: "\""):
                index += 1
                while let next = peek(), next != UInt8(ascii: "\"") {
                    index += next == UInt8(ascii: "\\") ? 2 : 1
                }
            case UInt8(ascii: "\\"):
                index += 1
            case open:
                depth += 1
            case close:
                depth -= 1
                if depth == 0 {
                    let inner = String(decoding: bytes[innerStart..<index], as: UTF8.self)
                    index += 1
                    return inner
                }
            default:
                break
            }
            index += 1
        }
        throw ShellSyntaxError(message: "unbalanced `\(Character(Unicode.Scalar(open)))`", position: start)
    }
}

extension UInt8 {
    var isASCIILetterOrDigit: Bool {
        (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "Z"))
            || (self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9"))
    }

    var hexDigitValue: UInt8? {
        switch self {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): self - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): self - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): self - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
