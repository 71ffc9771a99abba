// Over 400 lines on purpose: the built-in rule tables (dangerous and forbidden commands, wrappers
// such as sudo/env/xargs/ssh) sit beside the one matcher that reads them.
import GatehouseCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Classifies shell command lines by splitting them as `sh` does and matching rules against each
/// command that would run (after `sudo`, `env`, `xargs`, `sh -c`, `ssh host ...` and the like).
///
/// This prevents mistakes and leaves a record. It is not a sandbox: a command can always hide what it
/// does (a script file, an alias, a binary under another name), and the guard judges only the text.
public struct ShellClassifier: Sendable {
    public static let maximumBytes = 64 * 1024
    static let maximumNesting = 6

    public var settings: GuardSettings

    public init(settings: GuardSettings = GuardSettings()) {
        self.settings = settings
    }

    public func classify(_ text: String) -> ActionClassification {
        var walk = ShellWalk(settings: settings)
        let count = walk.classify(text, depth: 0, position: nil)
        return ActionClassification(kind: .shell, findings: walk.findings, statements: count)
    }
}

private struct ShellWalk {
    let settings: GuardSettings
    var findings: [Finding] = []
    var command = 1
    /// Where a nested command line (`sh -c '...'`, `$(...)`) starts in the outer text.
    var nestedAt: Int?

    init(settings: GuardSettings) {
        self.settings = settings
    }

    mutating func fire(_ category: String, at position: Int, _ detail: String, level: RiskLevel? = nil) {
        let position = nestedAt ?? position
        let level = level ?? settings.level(of: category, kind: .shell)
        guard !findings.contains(where: { $0.category == category && $0.statement == command && $0.detail == detail }) else { return }
        findings.append(Finding(category: category, level: level, statement: command, position: position, detail: detail))
    }

    /// Classifies a command line; returns how many simple commands it held.
    @discardableResult
    mutating func classify(_ text: String, depth: Int, position: Int?) -> Int {
        let outer = nestedAt
        if let position { nestedAt = outer ?? position }
        defer { nestedAt = outer }
        guard depth <= ShellClassifier.maximumNesting else {
            fire("unparseable", at: 0, "commands nested more than \(ShellClassifier.maximumNesting) deep")
            return 1
        }
        guard text.utf8.count <= ShellClassifier.maximumBytes else {
            fire("unparseable", at: 0, "the command line is \(text.utf8.count) bytes; the guard reads at most \(ShellClassifier.maximumBytes)")
            return 1
        }
        let script: ShellScript
        do {
            script = try ShellLexer.split(text)
        } catch {
            fire("unparseable", at: error.position, "\(error.message); the guard only judges command lines a shell would accept")
            return 1
        }
        let base = command
        for (index, simple) in script.commands.enumerated() {
            if depth == 0 { command = base + index }
            judge(simple, depth: depth)
        }
        judgePipelines(script, depth: depth)
        for substitution in script.substitutions {
            if depth == 0 { command = base + min(substitution.command, max(script.commands.count - 1, 0)) }
            classify(substitution.text, depth: depth + 1, position: substitution.position)
        }
        if depth == 0 { command = base }
        return max(script.commands.count, 1)
    }

    // MARK: One command

    private mutating func judge(_ simple: ShellCommand, depth: Int) {
        for redirection in simple.redirections { judgeRedirection(redirection) }
        var words = simple.words
        // Leading assignments (`HISTFILE=/dev/null cmd`) and keywords.
        while let first = words.first, !first.quoted {
            if first.text.hasPrefix("HISTFILE=") || first.text.hasPrefix("HISTSIZE=0") {
                fire("hide_tracks", at: first.position, "\(first.text) stops the shell history")
            }
            if Self.isAssignment(first.text) || Self.keywords.contains(first.text) {
                words.removeFirst()
            } else {
                break
            }
        }
        if words.first?.text == "for" || words.first?.text == "case" || words.first?.text == "function" { return }
        words = unwrap(words)
        guard let name = words.first else { return }
        // A glob or brace expansion in the name (`{mkfs.ext4,/dev/sda}`, `/sbin/mk*`) makes it another word or several.
        if name.expands || (name.globs && !["[", "[["].contains(name.text)) {
            fire("unresolved_command", at: name.position, "the command name `\(name.text)` is only known when the shell runs")
            return
        }
        let program = Self.basename(name.text)
        let arguments = Array(words.dropFirst())
        if let nested = nestedCommandLine(program, arguments) {
            classify(nested.text, depth: depth + 1, position: nested.position)
            return
        }
        judgeCustomRules(program, arguments, at: name.position)
        if let input = simple.input, Self.interpreters.contains(program) {
            classify(input, depth: depth + 1, position: name.position)
        }
        judgeProgram(program, arguments, input: simple.input.map { ShellWord(text: $0, position: name.position, expands: simple.inputExpands) },
                     at: name.position, depth: depth)
    }

    /// Drops `sudo`, `env`, `xargs`, `nohup`, `time` and similar wrappers with their own options.
    private func unwrap(_ words: [ShellWord]) -> [ShellWord] {
        var words = words
        var rounds = 0
        while let first = words.first, !first.expands, rounds < 16 {
            rounds += 1
            let program = Self.basename(first.text)
            guard let optionsWithValue = Self.wrappers[program] else { break }
            words.removeFirst()
            if program == "env" {
                words = Self.envCommand(words)
                continue
            }
            // Options of the wrapper, then for some wrappers a positional value (timeout's duration). A value the
            // shell expands may be several words (`sudo -u $(...)`): what follows it is not known.
            while let option = words.first, option.text.hasPrefix("-"), option.text != "-" {
                words.removeFirst()
                if option.text == "--" { break }
                if optionsWithValue.contains(option.text), let value = words.first {
                    if value.mayBeSeveral { return [Self.unknownCommand(value)] }
                    words.removeFirst()
                }
            }
            if program == "timeout" || program == "chroot", let value = words.first {
                if value.mayBeSeveral { return [Self.unknownCommand(value)] }
                words.removeFirst()
            }
            if program == "nice", let next = words.first, Int(next.text) != nil { words.removeFirst() }
        }
        // Wrappers past the rounds given: what they run is not looked at, so it is not known.
        if let first = words.first, !first.expands, Self.wrappers[Self.basename(first.text)] != nil { return [Self.unknownCommand(first)] }
        return words
    }

    /// A command whose words are known only when the shell runs (judged `unresolved_command`).
    static func unknownCommand(_ word: ShellWord) -> ShellWord {
        ShellWord(text: word.text, position: word.position, expands: true)
    }

    /// A command line carried as an argument: `sh -c '...'`, `su -c`, `eval`, `ssh host cmd`,
    /// `kubectl exec ... -- cmd`, `watch cmd`.
    private func nestedCommandLine(_ program: String, _ arguments: [ShellWord]) -> ShellWord? {
        // eval and ssh join their arguments with spaces and hand them to a shell again;
        // an argument vector after `--` (kubectl/docker exec) keeps its words.
        func joined(_ words: ArraySlice<ShellWord>, reparsed: Bool = true) -> ShellWord? {
            guard let first = words.first else { return nil }
            let texts = words.map { reparsed ? $0.text : Self.quote($0.text) }
            return ShellWord(text: texts.joined(separator: " "), position: first.position)
        }
        switch program {
        case _ where Self.shells.contains(program) || program == "su":
            if let flag = arguments.firstIndex(where: { $0.text == "-c" || ($0.text.hasPrefix("-") && !$0.text.hasPrefix("--") && $0.text.hasSuffix("c") && program != "su") }),
               flag + 1 < arguments.count {
                return arguments[flag + 1]
            }
            return nil
        case "eval", "watch":
            let start = arguments.firstIndex { !$0.text.hasPrefix("-") } ?? arguments.count
            return joined(arguments[start...])
        case "ssh":
            // ssh [options] host command...
            var index = 0
            let withValue: Set<String> = ["-p", "-i", "-l", "-o", "-F", "-J", "-L", "-R", "-D", "-b", "-c", "-e", "-m", "-S", "-W", "-w", "-E", "-B", "-O", "-Q"]
            while index < arguments.count, arguments[index].text.hasPrefix("-") {
                index += withValue.contains(arguments[index].text) ? 2 : 1
            }
            return index + 1 < arguments.count ? joined(arguments[(index + 1)...]) : nil
        case "kubectl", "oc":
            guard arguments.contains(where: { $0.text == "exec" }),
                  let dashes = arguments.firstIndex(where: { $0.text == "--" }) else { return nil }
            return joined(arguments[(dashes + 1)...], reparsed: false)
        case "docker", "podman", "nerdctl":
            // docker exec [options] CONTAINER COMMAND...
            guard let exec = arguments.firstIndex(where: { $0.text == "exec" }) else { return nil }
            let withValue: Set<String> = ["-e", "--env", "-u", "--user", "-w", "--workdir", "--env-file", "--detach-keys"]
            var index = exec + 1
            while index < arguments.count, arguments[index].text.hasPrefix("-") {
                index += withValue.contains(arguments[index].text) ? 2 : 1
            }
            return index + 1 < arguments.count ? joined(arguments[(index + 1)...], reparsed: false) : nil
        default:
            return nil
        }
    }

    private mutating func judgeRedirection(_ redirection: ShellRedirection) {
        let target = redirection.target.text
        // The path as written and without `.` and `..`: either form being a device or a system file counts
        // (`..` after a link such as /bin goes elsewhere than it reads, so the normal form only adds).
        let forms = [target, Self.lexicallyNormal(target)]
        guard redirection.op.contains(">") else { return }
        if redirection.op.hasSuffix("&"), Int(target) != nil || target == "-" { return }  // 2>&1, >&2
        if forms.contains("/proc/sysrq-trigger") {
            fire("shutdown", at: redirection.target.position, "writes to /proc/sysrq-trigger (can reboot or crash the machine)")
        } else if forms.contains(where: { $0.hasPrefix("/dev/") && !Self.harmlessDevices.contains($0) && !$0.hasPrefix("/dev/fd/") }) {
            fire("write_device", at: redirection.target.position, "output redirected to the device \(target)")
        } else if Self.isSystemFile(target) {
            fire("overwrite_system_file", at: redirection.target.position, "output redirected over \(target)")
        } else if target.hasSuffix("_history") {
            fire("hide_tracks", at: redirection.target.position, "overwrites the shell history \(target)")
        } else if !Self.harmlessDevices.contains(target), !target.hasPrefix("/dev/fd/"), !target.hasPrefix("&") {
            fire("command", at: redirection.target.position, "writes the file \(target)")
        }
    }

    private mutating func judgeCustomRules(_ program: String, _ arguments: [ShellWord], at position: Int) {
        for rule in settings.shellRules {
            guard let first = rule.words.first, Self.glob(first, program) else { continue }
            let rest = rule.words.dropFirst()
            if rest.allSatisfy({ pattern in arguments.contains { Self.glob(pattern, $0.text) } }) {
                fire("policy:\(rule.pattern)", at: position, "matches the policy rule `\(rule.pattern)`", level: rule.level)
            }
        }
    }

    // MARK: Programs

    private mutating func judgeProgram(_ program: String, _ arguments: [ShellWord], input: ShellWord?, at position: Int, depth: Int) {
        let texts = arguments.map(\.text)
        let flags = Self.shortFlags(texts)
        switch program {
        case "rm", "rmdir", "unlink", "shred", "srm":
            let recursive = flags.contains("r") || flags.contains("R") || texts.contains("--recursive")
            let force = flags.contains("f") || texts.contains("--force")
            let targets = Self.operands(arguments)
            if program == "shred", targets.contains(where: { $0.text.hasPrefix("/dev/") }) {
                fire("write_device", at: position, "shred of a device")
            } else if targets.contains(where: { $0.text.hasSuffix("_history") }) {
                fire("hide_tracks", at: position, "\(program) of the shell history")
            } else if let system = targets.first(where: { Self.isSystemFile($0.text) }) {
                fire("rm_protected", at: system.position, "\(program) \(system.text) removes a system file")
            } else if texts.contains("--no-preserve-root") {
                fire("rm_protected", at: position, "rm --no-preserve-root")
            } else if recursive || force || program == "shred" {
                if let protected = targets.first(where: Self.isProtected) {
                    fire("rm_protected", at: protected.position, "\(program) \(recursive ? "-r" : "-f") on \(protected.text)\(protected.expands ? " (a variable that may be empty)" : "")")
                } else if targets.contains(where: { $0.text.hasSuffix("_history") }) {
                    fire("hide_tracks", at: position, "\(program) of the shell history")
                } else {
                    fire("rm_recursive", at: position, "\(program) \(recursive ? "-r" : "-f") \(targets.map(\.text).joined(separator: " "))")
                }
            } else {
                fire("command", at: position, program)
            }
        case "find":
            // A search narrowed by tests (-name, -type, -mtime ...) does not reach everything under its root.
            let narrowed = texts.contains { ["-name", "-iname", "-path", "-ipath", "-wholename", "-regex", "-iregex", "-mtime", "-mmin",
                                             "-atime", "-amin", "-ctime", "-cmin", "-newer", "-size", "-user", "-group", "-perm", "-empty"].contains($0) }
            let searched = Array(arguments.prefix { !$0.text.hasPrefix("-") })
            let protectedRoot = narrowed ? searched.first(where: { ["/", "/*", "~", "$HOME"].contains($0.text) || Self.isSystemFile($0.text) }) : searched.first(where: Self.isProtected)
            if let exec = texts.firstIndex(where: { ["-exec", "-execdir", "-ok", "-okdir"].contains($0) }) {
                let end = texts[(exec + 1)...].firstIndex { $0 == ";" || $0 == "+" } ?? texts.count
                let inner = Array(arguments[(exec + 1)..<end]).filter { $0.text != "{}" } + [ShellWord(text: "{}", position: position)]
                if let name = inner.first {
                    judgeProgram(Self.basename(name.text), Array(inner.dropFirst()), input: nil, at: name.position, depth: depth)
                }
                let innerProgram = inner.first.map { Self.basename($0.text) } ?? ""
                if let protected = protectedRoot, ["rm", "shred", "mv"].contains(innerProgram) {
                    fire("rm_protected", at: protected.position, "find \(protected.text) -exec \(innerProgram)")
                } else if let protected = protectedRoot, ["chmod", "chown", "chgrp"].contains(innerProgram) {
                    fire("chmod_world_writable", at: protected.position, "find \(protected.text) -exec \(innerProgram)")
                }
            } else if texts.contains("-delete") {
                if let protected = protectedRoot {
                    fire("rm_protected", at: protected.position, "find \(protected.text) -delete")
                } else {
                    fire("rm_recursive", at: position, "find ... -delete")
                }
            }
        case _ where program.hasPrefix("mkfs") || ["mke2fs", "mkswap", "wipefs", "fdisk", "sfdisk", "cfdisk", "parted", "gdisk", "sgdisk", "blkdiscard"].contains(program):
            fire("format_filesystem", at: position, "\(program) rewrites a disk or file system")
        case "dd":
            if let target = texts.first(where: { $0.hasPrefix("of=/dev/") }), !Self.harmlessDevices.contains(String(target.dropFirst(3))) {
                fire("write_device", at: position, "dd \(target)")
            } else {
                fire("command", at: position, "dd")
            }
        case "chmod", "chown", "chgrp":
            let recursive = flags.contains("R") || texts.contains("--recursive")
            let operands = Self.operands(arguments)
            let mode = operands.first?.text ?? ""
            let worldWritable = program == "chmod" && (Self.worldWritableModes.contains(mode) || Self.setuidModes.contains(mode))
            let systemTarget = operands.dropFirst().first { Self.isSystemFile($0.text) }
            if (recursive && worldWritable) || (worldWritable && (operands.dropFirst().contains(where: Self.isProtected) || systemTarget != nil)) {
                fire("chmod_world_writable", at: position, "\(program) \(recursive ? "-R " : "")\(operands.first?.text ?? "") makes files writable by everyone")
            } else if recursive, let protected = operands.dropFirst().first(where: Self.isProtected) {
                fire("chmod_world_writable", at: protected.position, "\(program) -R on \(protected.text)")
            } else {
                fire("command", at: position, program)
            }
        case "cp", "mv", "install", "ln", "tee", "rsync", "truncate":
            let operands = Self.operands(arguments)
            let written = program == "tee" || program == "truncate" ? operands : Array(operands.suffix(1))
            if let system = written.first(where: { Self.isSystemFile($0.text) }) {
                fire("overwrite_system_file", at: system.position, "\(program) writes \(system.text)")
            } else {
                fire("command", at: position, program)
            }
        case "shutdown", "reboot", "halt", "poweroff":
            fire("shutdown", at: position, program)
        case "init", "telinit":
            if texts.contains("0") || texts.contains("6") { fire("shutdown", at: position, "\(program) \(texts.joined(separator: " "))") }
            else { fire("command", at: position, program) }
        case "systemctl":
            if let verb = texts.first(where: { ["reboot", "poweroff", "halt", "kexec", "emergency", "rescue", "soft-reboot"].contains($0) }) {
                fire("shutdown", at: position, "systemctl \(verb)")
            } else if Self.firstOperand(texts).map(["status", "show", "list-units", "list-timers", "cat", "is-active", "is-enabled"].contains) != true {
                fire("command", at: position, "systemctl")
            }
        case "kubectl", "oc":
            let verb = Self.firstOperand(texts, optionsWithValue: Self.kubectlOptionsWithValue)
            if verb == "delete" {
                let kinds = Self.operands(arguments).dropFirst().map { $0.text.lowercased() }
                let namespace = kinds.contains { ["namespace", "namespaces", "ns"].contains($0) || $0.hasPrefix("namespace/") || $0.hasPrefix("ns/") || $0.hasPrefix("namespaces/") }
                if namespace || texts.contains("--all") || texts.contains("-A") || texts.contains("--all-namespaces") {
                    fire("kubectl_delete_all", at: position, "kubectl delete \(kinds.joined(separator: " "))\(namespace ? "" : " --all")")
                } else {
                    fire("command", at: position, "kubectl delete")
                }
            } else if verb == "drain" {
                fire("kubectl_drain", at: position, "kubectl drain")
            } else if verb == "config" {
                let sub = Self.operands(arguments).dropFirst().first?.text ?? ""
                if !["view", "get-contexts", "current-context", "get-clusters", "get-users"].contains(sub) {
                    fire("command", at: position, "kubectl config \(sub)")
                }
            } else if verb.map(Self.kubectlReads.contains) != true {
                fire("command", at: position, "kubectl \(verb ?? "")")
            }
        case "terraform", "tofu", "terragrunt":
            let verb = Self.firstOperand(texts)
            if verb == "destroy" || (verb == "apply" && texts.contains { $0 == "-destroy" || $0 == "--destroy" }) {
                fire("terraform_destroy", at: position, "\(program) \(verb ?? "") destroys infrastructure")
            } else if verb == "apply", texts.contains(where: { ["-auto-approve", "--auto-approve", "-auto-approve=true", "--auto-approve=true"].contains($0) }) {
                fire("terraform_auto_approve", at: position, "\(program) apply -auto-approve skips the plan review")
            } else if verb.map(["plan", "show", "validate", "output", "version", "providers", "graph", "fmt"].contains) != true {
                fire("command", at: position, "\(program) \(verb ?? "")")
            }
        case "git":
            judgeGit(arguments, at: position)
        case "aws", "gcloud", "az", "gsutil", "doctl", "hcloud", "oci":
            // Subcommand words only (not bucket names, paths or option values).
            let words = Self.operands(arguments).prefix(4).map { $0.text.lowercased() }.filter { !$0.contains("/") && !$0.contains(":") && !$0.contains(".") }
            if let verb = words.first(where: { word in Self.cloudDeleteVerbs.contains { word == $0 || word.hasPrefix($0 + "-") } }) {
                fire("cloud_delete", at: position, "\(program) \(verb)")
            } else if texts.contains("--delete") || texts.contains("--force") && words.contains("rb") {
                fire("cloud_delete", at: position, "\(program) ... --delete removes what the source does not have")
            } else {
                fire("command", at: position, program)
            }
        case "iptables", "ip6tables", "nft", "ufw":
            if texts.contains(where: { ["-F", "--flush", "-X", "--delete-chain", "flush", "disable"].contains($0) })
                || (texts.contains("-P") && texts.contains("DROP")) {
                fire("firewall_flush", at: position, "\(program) \(texts.joined(separator: " "))")
            } else {
                fire("command", at: position, program)
            }
        case "history":
            if flags.contains("c") { fire("hide_tracks", at: position, "history -c clears the shell history") }
        case "unset", "export":
            if texts.contains(where: { $0 == "HISTFILE" || $0.hasPrefix("HISTFILE=") || $0 == "HISTSIZE=0" || $0 == "HISTFILESIZE=0" }) {
                fire("hide_tracks", at: position, "\(program) HISTFILE stops the shell history")
            }
        case "set":
            if texts.contains("+o"), texts.contains("history") { fire("hide_tracks", at: position, "set +o history") }
        case "journalctl":
            if texts.contains(where: { $0.hasPrefix("--vacuum") || $0 == "--rotate" }) {
                fire("hide_tracks", at: position, "journalctl \(texts.joined(separator: " ")) deletes logs")
            }
        case "date":
            if flags.contains("s") || texts.contains(where: { $0.hasPrefix("--set") }) { fire("command", at: position, "date --set changes the clock") }
        case "hostname":
            if !Self.operands(arguments).isEmpty { fire("command", at: position, "hostname NAME renames the machine") }
        case "mysql", "mariadb":
            judgeSQLClient(program, arguments, input: input, at: position)
        case "psql", "pgcli":
            judgeSQLClient(program, arguments, input: input, at: position)
        default:
            if !Self.readOnlyPrograms.contains(program) { fire("command", at: position, program) }
        }
    }

    private mutating func judgeGit(_ arguments: [ShellWord], at position: Int) {
        var texts = arguments.map(\.text)
        // `git -C dir`, `git -c key=value` come before the subcommand.
        while let first = texts.first, first.hasPrefix("-") {
            texts.removeFirst()
            if first == "-C" || first == "-c", !texts.isEmpty { texts.removeFirst() }
        }
        guard let verb = texts.first else { return }
        let rest = Array(texts.dropFirst())
        let flags = Self.shortFlags(rest)
        switch verb {
        case "push":
            if rest.contains(where: { $0 == "--force" || $0.hasPrefix("--force-with-lease") || $0 == "--force-if-includes" || $0 == "--mirror" || $0 == "--delete" || $0 == "--prune" })
                || flags.contains("f") || flags.contains("d")
                || rest.contains(where: { ($0.hasPrefix("+") || ($0.hasPrefix(":") && $0.count > 1)) }) {
                fire("git_force_push", at: position, "git push \(rest.joined(separator: " ")) rewrites or deletes remote history")
            } else {
                fire("command", at: position, "git push")
            }
        case "reset" where rest.contains("--hard"):
            fire("git_history_loss", at: position, "git reset --hard discards uncommitted work")
        case "clean" where flags.contains("f") || rest.contains("--force"):
            fire("git_history_loss", at: position, "git clean -f deletes untracked files")
        case "filter-branch", "filter-repo":
            fire("git_history_loss", at: position, "git \(verb) rewrites history")
        case "checkout" where rest.contains("--") || rest.contains(".") || flags.contains("f") || rest.contains("--force"):
            fire("git_history_loss", at: position, "git checkout \(rest.joined(separator: " ")) discards uncommitted changes")
        case "restore" where !rest.contains("--staged") || rest.contains("--worktree"):
            fire("git_history_loss", at: position, "git restore discards uncommitted changes")
        case "reflog" where rest.first == "expire" || rest.first == "delete":
            fire("git_history_loss", at: position, "git reflog \(rest.first!) drops recovery points")
        case "remote" where rest.isEmpty || rest == ["-v"] || rest.first == "show":
            break
        case "status", "log", "diff", "show", "fetch", "blame", "grep", "ls-files", "rev-parse", "describe", "shortlog", "reflog":
            break
        case "branch" where !flags.contains("D") && !flags.contains("d") && !rest.contains("--delete"):
            break
        default:
            fire("command", at: position, "git \(verb)")
        }
    }

    /// `input`: a here-document or here-string; `piped`: the readings of what a pipe gives the client.
    private mutating func judgeSQLClient(_ program: String, _ arguments: [ShellWord], input: ShellWord?, piped: [String] = [], at position: Int) {
        let mysql = program == "mysql" || program == "mariadb"
        // The short option that runs SQL, and those whose value follows them (in a group, `-Atc`, the rest of the word).
        let runs: Character = mysql ? "e" : "c"
        let takingValues: Set<Character> = mysql ? ["e", "u", "h", "P", "D", "S", "p"] : ["c", "d", "f", "F", "h", "L", "o", "p", "P", "R", "T", "U", "v"]
        var statements: [(word: ShellWord, fromInput: Bool)] = []
        // `-f FILE`: SQL from a file, unseen.
        var reads = false
        // psql's variables (`-v name=value`): psql puts them into the SQL it reads from input where it finds `:name`.
        // A value the shell completes when it runs is unknown (nil).
        var variables: [(name: String, value: String?)] = []
        func variable(_ word: ShellWord, dropping prefix: Int = 0) -> (name: String, value: String?) {
            let text = word.text.dropFirst(prefix)
            let name = String(text.prefix { $0 != "=" })
            let value = text.contains("=") ? String(text.drop { $0 != "=" }.dropFirst()) : ""
            return (name, word.expands || word.globs ? nil : value)
        }
        var index = 0
        while index < arguments.count {
            let word = arguments[index], text = word.text
            func value(_ text: String) -> ShellWord { ShellWord(text: text, position: word.position, expands: word.expands, globs: word.globs) }
            index += 1
            // Long options as getopt takes them: any unambiguous beginning (`--comm=...`), the value after `=` or next.
            let (longName, longValue) = text.hasPrefix("--") ? (String(text.prefix { $0 != "=" }), text.contains("=") ? String(text.drop { $0 != "=" }.dropFirst()) : nil) : ("", nil)
            func isLong(_ full: String, shortest: Int) -> Bool { longName.count >= shortest && full.hasPrefix(longName) }
            func longOperand() -> ShellWord? {
                if let longValue { return value(longValue) }
                guard index < arguments.count else { return nil }
                index += 1
                return arguments[index - 1]
            }
            if isLong(mysql ? "--execute" : "--command", shortest: mysql ? 4 : 5) || (mysql && isLong("--init-command", shortest: 4)) {
                if let operand = longOperand() { statements.append((operand, false)) }
            } else if isLong(mysql ? "--tee" : "--output", shortest: mysql ? 4 : 5) || (!mysql && isLong("--log-file", shortest: 4)) {
                if let operand = longOperand() { judgeRedirection(ShellRedirection(op: ">", target: operand)) }
            } else if !mysql, isLong("--file", shortest: 4) {
                _ = longOperand()
                reads = true
            } else if !mysql, let long = ["--set=", "--variable="].first(where: { text.hasPrefix($0) }) {
                variables.append(variable(word, dropping: long.count))
            } else if !mysql, text == "--set" || text == "--variable", index < arguments.count {
                variables.append(variable(arguments[index]))
                index += 1
            } else if text.hasPrefix("-"), !text.hasPrefix("--"), text.count > 1 {
                // A group of short options: each letter an option until one that takes a value.
                let letters = Array(text.dropFirst())
                guard let at = letters.firstIndex(where: { takingValues.contains($0) }) else { continue }
                let rest = String(letters[(at + 1)...])
                var taken: ShellWord?
                if !rest.isEmpty {
                    taken = value(rest)
                } else if index < arguments.count, !(mysql && letters[at] == "p") {
                    // (mysql's -p takes a password only written on to it; alone, it asks.)
                    taken = arguments[index]
                    index += 1
                }
                guard let taken else { continue }
                if letters[at] == runs { statements.append((taken, false)) }
                if !mysql, letters[at] == "v" { variables.append(variable(taken)) }
                // psql -o FILE and -L FILE write the results there; -f FILE runs SQL the guard does not see.
                if !mysql, letters[at] == "o" || letters[at] == "L" { judgeRedirection(ShellRedirection(op: ">", target: taken)) }
                if !mysql, letters[at] == "f" { reads = true }
            }
        }
        if let input { statements.append((input, true)) }
        statements += piped.map { (ShellWord(text: $0, position: position), true) }
        if reads || statements.isEmpty { fire("command", at: position, "\(program) runs SQL the guard cannot see") }
        let classifier = SQLClassifier(settings: settings)
        for (statement, fromInput) in statements {
            var text = statement.text
            if statement.expands || statement.globs {
                fire("sql_via_client", at: position, "\(program) runs SQL the shell completes when it runs ($VAR, $(...), a glob): the guard cannot read it",
                     level: .dangerous)
                continue
            }
            if mysql, let reason = Self.mysqlReadsOtherwise(text) {
                fire("sql_via_client", at: position, "\(program) \(reason): the guard reads SQL as PostgreSQL does", level: .dangerous)
                continue
            }
            // psql puts variables into what it reads from input (not into `-c`), outside quotes, not after `::`: the
            // text is judged with their values in, unless one is only known when the shell runs.
            if fromInput, !variables.isEmpty {
                guard let substituted = Self.interpolating(variables, in: text) else {
                    fire("sql_via_client", at: position, "\(program) puts a variable whose value the shell completes when it runs into the SQL: the guard cannot read the result",
                         level: .dangerous)
                    continue
                }
                text = substituted
            }
            // psql's own commands that only show things (`\dt`, `\l`, `\x`) are not SQL: the rest is judged.
            let sql = mysql ? text : Self.withoutDisplayCommands(text) ?? text
            if sql.allSatisfy(\.isWhitespace) { continue }
            let result = classifier.classify(sql)
            guard result.risk > .read else { continue }
            let summary = result.findings.filter { $0.level == result.risk }.map { "\($0.category) (\($0.detail))" }
            fire("sql_via_client", at: position, "\(program) runs SQL: \(summary.joined(separator: "; "))", level: result.risk)
        }
    }

    /// psql's backslash commands that only describe or display (`\d users`, `\dt+`, `\l`, `\du`, `\x`, `\timing`,
    /// `\conninfo`, `\sf f`): nothing they do reaches the database beyond reading its catalog, or leaves the client.
    /// `\!`, `\copy`, `\i`, `\o`, `\g`, `\gexec`, `\set`, `\c`, `\encoding`, `\if`, `\lo_...` and the rest are not among them.
    static let displayCommands: Set<String> = [
        "d", "da", "dA", "dAc", "dAf", "dAo", "dAp", "db", "dc", "dC", "dd", "dD", "ddp", "dE", "di", "dm", "ds", "dt", "dv", "des", "det", "deu",
        "dew", "df", "dF", "dFd", "dFp", "dFt", "dg", "dl", "dL", "dn", "do", "dO", "dp", "dP", "dPi", "dPt", "drds", "drg", "dRp", "dRs", "dT",
        "du", "dx", "dX", "dy", "l", "list", "lo_list", "z", "sf", "sv", "conninfo", "x", "timing", "a", "t", "H", "pset", "echo", "qecho",
        "errverbose", "copyright", "?", "h", "help", "q", "quit", "T", "C", "f",
    ]

    /// The text without its lines that are psql display commands (see `displayCommands`; `S` and `+` after a name
    /// allowed); nil when another backslash command is there, or a backslash stands anywhere else at a line's start.
    static func withoutDisplayCommands(_ text: String) -> String? {
        guard text.contains("\\") else { return text }
        var kept: [Substring] = []
        // The SQL between display commands, each stretch complete in itself: a line that psql would read inside
        // a string or comment begun before it is no command.
        var stretch: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard trimmed.hasPrefix("\\") else {
                kept.append(line)
                stretch.append(line)
                continue
            }
            var name = String(trimmed.dropFirst().prefix { !$0.isWhitespace && $0 != "\\" })
            let arguments = trimmed.dropFirst(1 + name.count)
            while name.count > 1, name.hasSuffix("+") || name.hasSuffix("S") { name.removeLast() }
            // Plain arguments only: psql runs a backtick's command, reads `\\` as the end of the command and a
            // quote as the start of one argument that may run on.
            guard displayCommands.contains(name), !arguments.contains(where: { "\\`'\"".contains($0) }),
                  PgQuery.tokens(stretch.joined(separator: "\n")) != nil else { return nil }
            stretch = []
        }
        return kept.joined(separator: "\n")
    }

    /// The text with psql's variables put in as its lexer does: `:name` as the value, `:'name'` as a string literal,
    /// `:"name"` as an identifier; outside quoted strings and comments, not `::`. A later `-v` of a name wins. Nil
    /// when a variable whose value is unknown is used.
    static func interpolating(_ variables: [(name: String, value: String?)], in text: String) -> String? {
        var values: [String: String?] = [:]
        for variable in variables { values[variable.name] = variable.value }
        // PostgreSQL's scanner finds the strings (E'', $$), comments and `::` as psql's lexer does; text it cannot
        // scan is not judged.
        guard let tokens = PgQuery.tokens(text, comments: true) else { return nil }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var copied = 0
        for (index, token) in tokens.enumerated() where token.kind == Int(UInt8(ascii: ":")) && index + 1 < tokens.count {
            let next = tokens[index + 1]
            guard next.start == token.end, next.end > next.start else { continue }
            let first = bytes[next.start]
            let quote: UInt8? = first == UInt8(ascii: "'") || first == UInt8(ascii: "\"") ? first : nil
            let nameBytes = quote == nil ? bytes[next.start..<next.end] : bytes[(next.start + 1)..<max(next.start + 1, next.end - 1)]
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard !name.isEmpty, nameBytes.allSatisfy({ $0.isASCIILetterOrDigit || $0 == UInt8(ascii: "_") || $0 >= 0x80 }),
                  quote == nil || bytes[next.end - 1] == quote, let known = values[name] else { continue }
            guard let value = known else { return nil }
            out += bytes[copied..<token.start]
            switch quote {
            case UInt8(ascii: "'")?:
                let escaped = value.replacingOccurrences(of: "'", with: "''")
                out += Array((value.contains("\\") ? " E'" + escaped.replacingOccurrences(of: "\\", with: "\\\\") + "'" : "'" + escaped + "'").utf8)
            case UInt8(ascii: "\"")?:
                out += Array(("\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\"").utf8)
            default:
                out += Array(value.utf8)
            }
            copied = next.end
        }
        out += bytes[copied...]
        return String(decoding: out, as: UTF8.self)
    }

    /// Where MySQL reads a text otherwise than PostgreSQL, outside its strings and comments: a `/*! ... */`
    /// comment (MySQL runs it), `--` followed by neither white space nor the end (not a comment to MySQL), and a
    /// backslash inside a string (an escape to MySQL: `'a\'` does not end there). Nil when none.
    static func mysqlReadsOtherwise(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "'"), UInt8(ascii: "\""), UInt8(ascii: "`"):
                index += 1
                while index < bytes.count, bytes[index] != byte {
                    // `\'` does not end a MySQL string (it ends PostgreSQL's); a quote inside a backtick name is
                    // the start of a string to PostgreSQL.
                    if byte == UInt8(ascii: "`"), bytes[index] == UInt8(ascii: "'") || bytes[index] == UInt8(ascii: "\"") {
                        return "reads `...` as a name where PostgreSQL reads a string"
                    }
                    if byte != UInt8(ascii: "`"), bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count {
                        if bytes[index + 1] == byte { return "reads a backslash before a quote as an escape" }
                        index += 1
                    }
                    index += 1
                }
            case UInt8(ascii: "#"):
                return "reads # as the start of a comment"
            case UInt8(ascii: "/") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "*"):
                if index + 2 < bytes.count, bytes[index + 2] == UInt8(ascii: "!") { return "runs /*! ... */ comments" }
                index += 2
                while index + 1 < bytes.count, !(bytes[index] == UInt8(ascii: "*") && bytes[index + 1] == UInt8(ascii: "/")) {
                    // MySQL's comments do not nest; PostgreSQL's do.
                    if bytes[index] == UInt8(ascii: "/"), bytes[index + 1] == UInt8(ascii: "*") { return "ends a comment at the first */ where PostgreSQL nests them" }
                    index += 1
                }
                index += 1
            case UInt8(ascii: "-") where index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "-"):
                guard index + 2 >= bytes.count || [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(bytes[index + 2]) else {
                    return "reads -- without a space after it as two minus signs"
                }
                while index < bytes.count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
            default:
                break
            }
            index += 1
        }
        return nil
    }

    // MARK: Pipelines

    /// `curl ... | sh`, `bash <(curl ...)`, `sh -c "$(curl ...)"`: downloaded code run at once.
    private mutating func judgePipelines(_ script: ShellScript, depth: Int) {
        let programs = script.commands.map { simple -> String in
            let words = unwrap(simple.words.filter { !Self.isAssignment($0.text) })
            return words.first.map { Self.basename($0.text) } ?? ""
        }
        for (index, simple) in script.commands.enumerated() where Self.interpreters.contains(programs[index]) || programs[index] == "eval" || programs[index] == "source" || programs[index] == "." {
            let fedByDownload = script.commands.indices.contains { earlier in
                earlier < index && script.commands[earlier].pipeline == simple.pipeline && Self.downloaders.contains(programs[earlier])
            }
            let substitutedDownload = script.substitutions.contains { substitution in
                substitution.command == index && Self.downloaders.contains { substitution.text.contains($0) }
            }
            if fedByDownload || substitutedDownload {
                fire("pipe_to_shell", at: simple.position, "runs code downloaded by \(programs.filter(Self.downloaders.contains).first ?? "a download") with \(programs[index])")
            } else if simple.stage > 0, Self.shells.contains(programs[index]) || programs[index].hasPrefix("python") || ["perl", "ruby", "node"].contains(programs[index]) {
                let operands = Self.operands(Array(unwrap(simple.words).dropFirst()))
                if operands.isEmpty {
                    fire("pipe_to_shell", at: simple.position, "runs whatever the pipe produces with \(programs[index])")
                }
            }
        }
        // A client encoding other than UTF-8 (`PGCLIENTENCODING=SJIS psql`, `export PGCLIENTENCODING=...`, a
        // connection string's `client_encoding=`): the server would read bytes the guard read as UTF-8 otherwise
        // (in SJIS or GBK a backslash may end a multi-byte character).
        if programs.contains(where: { ["psql", "pgcli", "mysql", "mariadb"].contains($0) }) {
            for command in script.commands {
                for word in command.words {
                    guard let encoding = Self.clientEncodings(in: word.text).first(where: Self.backslashSwallowingEncodings.contains) else { continue }
                    fire("sql_via_client", at: word.position, "client encoding \(encoding): the server would read the SQL otherwise than the guard reads it (UTF-8)",
                         level: .dangerous)
                }
            }
        }
        // `echo "DROP TABLE t" | psql`: the SQL comes from the previous stage (through `tee` or a bare `cat`).
        for (index, simple) in script.commands.enumerated() where simple.stage > 0 {
            guard let client = sqlClient(unwrap(simple.words.filter { !Self.isAssignment($0.text) })) else { continue }
            var stage = simple.stage - 1
            var feederIndex = script.commands.lastIndex { $0.pipeline == simple.pipeline && $0.stage == stage }
            while let current = feederIndex, programs[current] == "tee" || (programs[current] == "cat" && Self.passesInputThrough(script.commands[current])), stage > 0 {
                stage -= 1
                feederIndex = script.commands.lastIndex { $0.pipeline == simple.pipeline && $0.stage == stage }
            }
            guard let feederIndex, ["echo", "printf"].contains(programs[feederIndex]) else { continue }
            let feeder = script.commands[feederIndex], name = programs[feederIndex]
            let own = Self.variableOptions(client.arguments)
            let words = Array(unwrap(feeder.words.filter { !Self.isAssignment($0.text) }).dropFirst())
            if words.contains(where: { $0.expands || $0.globs }) {
                fire("sql_via_client", at: simple.position, "\(client.program) runs SQL that \(name) writes from words the shell completes when it runs ($VAR, $(...), a glob, {a,b}): the guard cannot read it",
                     level: .dangerous)
                continue
            }
            // (Without arguments printf has nothing to complain of.)
            if name == "printf", words.count > 1, feeder.pipesErrors || feeder.redirections.contains(where: { $0.op == ">&" && $0.target.text == "1" }) {
                fire("sql_via_client", at: simple.position, "printf's error messages, which repeat its arguments, go into the pipe to \(client.program) too", level: .dangerous)
            }
            // What the pipe carries, as bash (also with xpg_echo) and as dash write it (their options and escapes
            // differ: printf and `echo -e` turn `\n` into a newline, dash's plain echo does too, bash's does not; a
            // comment `-- \n OR true` may end there). Every reading is judged; the riskiest counts.
            let arguments = words.map(\.text)
            var readings: [String] = []
            for shell in ShellOutput.Shell.allCases {
                guard let output = name == "printf" ? ShellOutput.printf(arguments, shell: shell) : ShellOutput.echo(arguments, shell: shell) else {
                    fire("unparseable", at: feeder.position, "printf would write more than \(ShellOutput.maximumOutput) bytes; the guard reads no more")
                    continue
                }
                guard var text = String(validating: output, as: UTF8.self) else {
                    fire("sql_via_client", at: simple.position, "\(name) writes bytes that are not UTF-8: a client encoding may read them otherwise", level: .dangerous)
                    continue
                }
                // dash's echo prints the options bash's takes (`echo -e 'SELECT 1'` writes `-e SELECT 1`): psql fails
                // the statement they begin and runs those after it.
                if name == "echo", shell == .dash, ShellOutput.bashEchoOptions(arguments) > (arguments.first == "-n" ? 1 : 0) {
                    guard let rest = Self.afterFirstStatement(text, or: ShellOutput.echo(Array(arguments.dropFirst(ShellOutput.bashEchoOptions(arguments))), shell: .dash)) else { continue }
                    text = rest
                }
                if !readings.contains(text) { readings.append(text) }
            }
            judgeSQLClient(client.program, own, input: nil, piped: readings, at: simple.position)
        }
    }

    /// The SQL client a command is, with its arguments: psql or mysql itself, or the one it runs elsewhere
    /// (`kubectl exec -i db-0 -- psql`, `docker exec -i db psql`, `ssh host psql`), which reads the same pipe.
    private func sqlClient(_ words: [ShellWord]) -> (program: String, arguments: [ShellWord])? {
        guard let first = words.first else { return nil }
        let program = Self.basename(first.text)
        if ["psql", "mysql", "mariadb"].contains(program) { return (program, Array(words.dropFirst())) }
        guard let nested = nestedCommandLine(program, Array(words.dropFirst())), !nested.expands,
              let script = try? ShellLexer.split(nested.text), script.commands.count == 1, let command = script.commands.first else { return nil }
        let inner = unwrap(command.words.filter { !Self.isAssignment($0.text) })
        guard let name = inner.first.map({ Self.basename($0.text) }), ["psql", "mysql", "mariadb"].contains(name) else { return nil }
        return (name, Array(inner.dropFirst()))
    }

    /// Client encodings in which the second byte of a character may be a backslash or a quote (SJIS, BIG5, GBK,
    /// GB18030, UHC, JOHAB; MySQL's cp932 and gb2312-like): the server would then read other SQL than the guard.
    static let backslashSwallowingEncodings: Set<String> = ["sjis", "shiftjis", "mskanji", "big5", "gbk", "cp936", "gb18030", "uhc", "johab",
                                                           "cp932", "win932", "win936", "win949", "win950", "cp949", "cp950", "sjis2004", "shiftjis2004",
                                                           "windows932", "windows936", "windows949", "windows950", "big5hkscs"]

    /// Every client encoding a word sets (`PGCLIENTENCODING=SJIS`, `client_encoding=gbk`, mysql's
    /// `--default-character-set=gbk`), named as PostgreSQL compares names (`SQLClassifier.encodingName`).
    static func clientEncodings(in text: String) -> [String] {
        let lowered = text.lowercased()
        var found: [String] = []
        for key in ["pgclientencoding", "client_encoding", "client-encoding", "character-set"] {
            var rest = lowered[...]
            while let range = rest.range(of: key) {
                var after = rest[range.upperBound...].drop { $0 == " " }
                if after.first == "=" {
                    after = after.dropFirst().drop { $0 == " " || $0 == "'" || $0 == "\"" }
                    found.append(SQLClassifier.encodingName(String(after.prefix { !" ;'\"&".contains($0) })))
                }
                rest = rest[range.upperBound...]
            }
        }
        return found
    }

    /// `cat` with no file to read (or `-`): what it is given, it writes.
    static func passesInputThrough(_ command: ShellCommand) -> Bool {
        command.words.dropFirst().allSatisfy { $0.text == "-" || ($0.text.hasPrefix("-") && $0.text.count > 1) }
    }

    /// psql's variable options among its words (`-v x=1`, `--set=x=1`), kept for the SQL it reads from a pipe.
    static func variableOptions(_ words: [ShellWord]) -> [ShellWord] {
        var options: [ShellWord] = []
        var index = 0
        while index < words.count {
            let text = words[index].text
            if ["-v", "--set", "--variable"].contains(text), index + 1 < words.count {
                options += words[index...(index + 1)]
                index += 2
                continue
            }
            if text.hasPrefix("--set=") || text.hasPrefix("--variable=") || (text.hasPrefix("-v") && text.count > 2) { options.append(words[index]) }
            index += 1
        }
        return options
    }

    /// The text psql runs after the first statement of `text` fails: what follows its first `;` outside
    /// parentheses, quotes and comments (nil: there is none and no backslash command, nothing else runs). When
    /// the text does not scan or holds a backslash, `otherwise` (the text without what made the first statement
    /// fail), a reading at least as risky.
    static func afterFirstStatement(_ text: String, or otherwise: [UInt8]) -> String? {
        guard let tokens = PgQuery.tokens(text) else { return String(decoding: otherwise, as: UTF8.self) }
        var depth = 0
        for token in tokens {
            switch token.kind {
            case Int(UInt8(ascii: "(")): depth += 1
            case Int(UInt8(ascii: ")")): depth = max(0, depth - 1)
            case Int(UInt8(ascii: ";")) where depth == 0:
                return String(decoding: text.utf8.dropFirst(token.end), as: UTF8.self)
            default: break
            }
        }
        // No second statement; but psql runs a backslash command (`\!`, `\r` that clears the failed one) wherever
        // a line holds one.
        return text.contains("\\") ? String(decoding: otherwise, as: UTF8.self) : nil
    }

    // MARK: env

    /// GNU env's long options (any unique beginning names one), and whether each takes a value (`=VALUE`, or the
    /// next word when the value is required).
    static let envLongOptions: [(name: String, value: EnvValue)] = [
        ("ignore-environment", .none), ("null", .none), ("unset", .required), ("chdir", .required), ("split-string", .required),
        ("argv0", .required), ("block-signal", .optional), ("default-signal", .optional), ("ignore-signal", .optional),
        ("list-signal-handling", .none), ("debug", .none), ("help", .none), ("version", .none),
    ]
    enum EnvValue { case none, required, optional }

    /// What `env ARGUMENTS` runs: its options read as GNU env reads them (short ones clustered, `-iu NAME`; a long
    /// one by any unique beginning, `--spl=...`), the string of `-S`/`--split-string` split and put back among
    /// the arguments, where env goes on reading options; then its assignments skipped. What cannot be read
    /// (an unbalanced quote in a split string, splits within splits past 8) is a command known only when run.
    static func envCommand(_ arguments: [ShellWord]) -> [ShellWord] {
        var rest = arguments[...]
        var splits = 0
        while let option = rest.first, option.text.hasPrefix("-"), !option.expands {
            rest.removeFirst()
            let text = option.text
            if text == "--" { break }
            var split: ShellWord?
            if text.hasPrefix("--") {
                let body = text.dropFirst(2)
                let name = String(body.prefix { $0 != "=" })
                let attached = body.contains("=") ? String(body.drop { $0 != "=" }.dropFirst()) : nil
                let matches = envLongOptions.filter { $0.name.hasPrefix(name) }
                guard let long = matches.first(where: { $0.name == name }) ?? (matches.count == 1 ? matches.first : nil) else { continue }
                let value = attached.map { ShellWord(text: $0, position: option.position, expands: option.expands) }
                    ?? (long.value == .required ? rest.popFirst() : nil)
                if let value, value.mayBeSeveral, long.name != "split-string" { return [unknownCommand(value)] }
                if long.name == "split-string" { split = value }
            } else {
                // A cluster of short options: a letter that takes a value takes the rest of the word, or the next word.
                for (offset, letter) in text.dropFirst().enumerated() where "SuCa".contains(letter) {
                    let attached = String(text.dropFirst(offset + 2))
                    let value = attached.isEmpty ? rest.popFirst() : ShellWord(text: attached, position: option.position, expands: option.expands)
                    // A value the shell expands may be several words (`-u $(...)`): what follows is not known.
                    if let value, value.mayBeSeveral, letter != "S" { return [unknownCommand(value)] }
                    if letter == "S" { split = value }
                    break
                }
            }
            if let split {
                splits += 1
                guard splits <= 8, let words = envSplit(split) else {
                    return [ShellWord(text: "env -S", position: split.position, expands: true)]
                }
                rest = (words + rest)[...]
            }
        }
        // After the options a lone `-` (as `-i`), then every word with a `=` is an assignment, whatever its name
        // (`1=x`, `=x`, `--chdir=/tmp` after `--`); one the shell expands may be several words.
        if rest.first?.text == "-", rest.first?.expands == false { rest.removeFirst() }
        while let assignment = rest.first, assignment.text.contains("=") {
            if assignment.mayBeSeveral { return [unknownCommand(assignment)] }
            rest.removeFirst()
        }
        return Array(rest)
    }

    /// The words env makes of a `-S` string: split at blanks and `\_`, with '...' and "..." quoting, backslash
    /// escapes, `#` starting a comment and `\c` ending the string; a word with `${NAME}` is known only when run.
    /// Nil for a string env would refuse (an unbalanced quote, an unknown escape).
    static func envSplit(_ string: ShellWord) -> [ShellWord]? {
        var words: [ShellWord] = []
        var current = "", started = false, expands = string.expands
        var quote: Character?
        var characters = Array(string.text)[...]
        func end() {
            if started { words.append(ShellWord(text: current, position: string.position, expands: expands)) }
            current = ""
            started = false
            expands = string.expands
        }
        while let character = characters.popFirst() {
            if quote == "'" {
                if character == "'" { quote = nil; continue }
                if character == "\\", let next = characters.first, next == "\\" || next == "'" { characters.removeFirst(); current.append(next); continue }
                current.append(character)
                continue
            }
            switch character {
            case "'" where quote == nil, "\"":
                if character == "\"" { quote = quote == "\"" ? nil : "\"" } else { quote = "'" }
                started = true
            case " ", "\t", "\n", "\r", "\u{0B}", "\u{0C}":
                if quote == "\"" { current.append(character) } else { end() }
            case "#" where quote == nil && !started:
                end()
                return words
            case "$":
                guard characters.first == "{" else { return nil }
                expands = true
                started = true
                current.append(character)
            case "\\":
                guard let next = characters.popFirst() else { return nil }
                switch next {
                case "_": if quote == "\"" { current.append(" ") } else { end() }
                case "c":
                    guard quote == nil else { return nil }
                    end()
                    return words
                case "t": current.append("\t"); started = true
                case "n": current.append("\n"); started = true
                case "r": current.append("\r"); started = true
                case "f": current.append("\u{0C}"); started = true
                case "v": current.append("\u{0B}"); started = true
                case "\\", "\"", "'", "$", "#": current.append(next); started = true
                default: return nil
                }
            default:
                current.append(character)
                started = true
            }
        }
        guard quote == nil else { return nil }
        end()
        return words
    }

    // MARK: Tables and helpers

    static let keywords: Set<String> = ["if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "esac", "in", "time"]
    /// Wrappers and the options of theirs that take a value.
    static let wrappers: [String: Set<String>] = [
        "sudo": ["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "--user", "--group", "--chdir"],
        "doas": ["-u", "-C"], "env": ["-u", "-C", "-S", "--unset", "--chdir"], "nohup": [], "time": ["-o", "-f"],
        "nice": ["-n", "--adjustment"], "ionice": ["-c", "-n", "-p"], "timeout": ["-s", "-k", "--signal", "--kill-after"],
        "stdbuf": ["-i", "-o", "-e"], "command": [], "builtin": [], "exec": ["-a"], "chroot": ["--userspec", "--groups"],
        "xargs": ["-I", "-i", "-n", "-P", "-L", "-l", "-d", "-E", "-e", "-s", "-a", "--max-args", "--max-procs", "--delimiter", "--arg-file", "--replace"],
        "unbuffer": [], "busybox": [], "strace": ["-o", "-e", "-p", "-s"], "setsid": [], "flock": ["-w", "-E"],
        "runuser": ["-u", "-g"], "caffeinate": [], "proxychains": [], "torsocks": [],
    ]
    static let shells: Set<String> = ["sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "ash", "csh", "tcsh"]
    static let interpreters: Set<String> = shells.union(["python", "python2", "python3", "perl", "ruby", "node", "php", "lua", "pwsh", "powershell"])
    static let downloaders: Set<String> = ["curl", "wget", "fetch", "aria2c", "http", "https", "nc", "ncat"]
    static let harmlessDevices: Set<String> = ["/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/zero", "/dev/random", "/dev/urandom"]
    static let systemFilePrefixes = ["/etc", "/boot", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/var/lib", "/proc", "/sys"]

    /// As written or without `.` and `..` (either counts: the normal form only adds).
    static func isSystemFile(_ text: String) -> Bool {
        [text, lexicallyNormal(text)].contains { path in systemFilePrefixes.contains { path == $0 || path.hasPrefix($0 + "/") } }
    }
    static let protectedPaths: Set<String> = ["/", "/*", "*", ".", "..", "./*", "../*", "~", "~/*", "$HOME", "${HOME}", "/bin", "/boot", "/dev", "/etc",
                                              "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/sbin", "/srv", "/sys", "/usr", "/var", "/mnt", "/media",
                                              "/var/lib", "/var/log", "/usr/local", "/usr/bin", "/usr/lib"]
    static let setuidModes: Set<String> = ["u+s", "g+s", "+s", "a+s", "4755", "4777", "2755", "6755", "4711"]
    static let worldWritableModes: Set<String> = ["777", "0777", "1777", "666", "0666", "a+rwx", "ugo+rwx", "a+w", "o+w", "ugo+w", "a=rwx", "o+rwx"]
    static let cloudDeleteVerbs = ["delete", "terminate", "destroy", "remove", "rb", "rm", "purge", "deregister", "drop"]
    static let kubectlReads: Set<String> = ["get", "describe", "logs", "top", "explain", "version", "api-resources", "api-versions", "cluster-info", "auth", "diff"]
    static let kubectlOptionsWithValue: Set<String> = ["-n", "--namespace", "--context", "--kubeconfig", "--cluster", "--user", "-s", "--server",
                                                       "--token", "-l", "--selector", "-o", "--output", "--as", "--as-group", "--request-timeout"]
    static let readOnlyPrograms: Set<String> = [
        "ls", "ll", "cat", "head", "tail", "less", "more", "grep", "egrep", "fgrep", "rg", "echo", "printf", "pwd", "whoami", "id",
        "date", "uptime", "df", "du", "ps", "top", "htop", "free", "uname", "hostname", "which", "type", "file", "stat", "wc", "sort",
        "uniq", "cut", "tr", "diff", "cmp", "md5sum", "sha1sum", "sha256sum", "jq", "yq", "true", "false", "test", "[", "sleep",
        "journalctl", "dig", "nslookup", "host", "ping", "traceroute", "lsblk", "lsof", "netstat", "ss", "env", "printenv", "cd",
        "basename", "dirname", "realpath", "readlink", "column", "nl", "tac", "rev", "zcat", "zgrep", "base64", "xxd", "od", "seq",
        "vmstat", "iostat", "findmnt", "getent", "groups", "w", "who", "last", "tree", "locate", "man", "help", "read",
    ]

    static func isAssignment(_ text: String) -> Bool {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else { return false }
        return text[..<equals].allSatisfy { $0 == "_" || $0.isLetter || $0.isNumber } && !(text.first?.isNumber ?? true)
    }

    static func basename(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    static func quote(_ text: String) -> String {
        "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }

    /// Letters of short option clusters (`-rf` gives r and f), up to `--`.
    static func shortFlags(_ texts: [String]) -> Set<Character> {
        var letters = Set<Character>()
        for text in texts {
            if text == "--" { break }
            if text.hasPrefix("-"), !text.hasPrefix("--"), text.count > 1 { letters.formUnion(text.dropFirst()) }
        }
        return letters
    }

    /// Arguments that are not options (everything after `--` counts).
    static func operands(_ words: [ShellWord]) -> [ShellWord] {
        var result: [ShellWord] = []
        var optionsEnded = false
        for word in words {
            if !optionsEnded && word.text == "--" { optionsEnded = true; continue }
            if !optionsEnded && word.text.hasPrefix("-") && word.text.count > 1 && !word.quoted { continue }
            result.append(word)
        }
        return result
    }

    static func firstOperand(_ texts: [String], optionsWithValue: Set<String> = []) -> String? {
        var index = 0
        while index < texts.count {
            let text = texts[index]
            if !text.hasPrefix("-") { return text }
            index += optionsWithValue.contains(text) ? 2 : 1
        }
        return nil
    }

    /// As written or without `.` and `..` (either counts: `..` after a link such as /bin goes elsewhere
    /// than it reads, so the normal form only adds).
    static func isProtected(_ word: ShellWord) -> Bool {
        if word.globs, !word.quoted {
            // `/{etc,usr}`, `/e*`, `/[e]tc`, `/?tc`: any word the shell may make of it.
            return braceExpansions(word.text).contains { pattern in
                isProtected(pattern, word) || isProtected(lexicallyNormal(pattern), word)
                    || protectedPaths.contains { $0.hasPrefix("/") && !$0.contains("*") && glob(lexicallyNormal(pattern), $0, pathname: true) }
            }
        }
        return isProtected(word.text, word) || isProtected(lexicallyNormal(word.text), word)
    }

    /// The words a brace expansion makes (`/{etc,usr}/x`: `/etc/x`, `/usr/x`), as many as 64; the word itself
    /// when it has none.
    static func braceExpansions(_ text: String) -> [String] {
        var results: [String] = []
        var pending = [text]
        while let next = pending.popLast(), results.count + pending.count < 64 {
            let bytes = Array(next.utf8)
            guard let open = bytes.firstIndex(of: UInt8(ascii: "{")) else { results.append(next); continue }
            var depth = 0, close: Int?
            var commas: [Int] = []
            for index in open..<bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "{"): depth += 1
                case UInt8(ascii: "}"):
                    depth -= 1
                    if depth == 0 { close = index }
                case UInt8(ascii: ",") where depth == 1: commas.append(index)
                default: break
                }
                if close != nil { break }
            }
            guard let close, !commas.isEmpty else { results.append(next); continue }
            let prefix = bytes[..<open], suffix = bytes[(close + 1)...]
            for (start, end) in zip([open] + commas, commas + [close]) {
                pending.append(String(decoding: prefix + bytes[(start + 1)..<end] + suffix, as: UTF8.self))
            }
        }
        return results.isEmpty ? [text] : results
    }

    private static func isProtected(_ text: String, _ word: ShellWord) -> Bool {
        var path = text
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        while path.hasPrefix("//") { path.removeFirst() }
        // A word that begins with an expansion (`$DIR`, `$(...)`, a backtick) could be any path; with a plain
        // ending after it (`"$TMPDIR"/cache`), only one that ends so (`"$X"/`, `"$X"/etc`, `"$X"/*`, `"$X"/..`).
        if word.expands, path.hasPrefix("$") || path.hasPrefix("`") {
            // Not under $HOME (its whole tree is the user's), nothing but a plain ending, no `..` or `~`.
            guard !path.hasPrefix("$HOME"), !path.hasPrefix("${HOME"), let suffix = plainEnding(path), !suffix.isEmpty,
                  !suffix.contains(".."), !suffix.contains("~") else { return true }
            // The expansion empty (`/etc/*`, `//etc`, `/e*`, `/{etc,x}` judged as paths), or a protected path
            // ending so (`"$PREFIX"/etc`).
            let alone = ShellWord(text: suffix, position: word.position, globs: word.globs || suffix.contains(where: { "*?[{".contains($0) }))
            let normal = lexicallyNormal(suffix)
            return isProtected(alone) || protectedPaths.contains { $0.hasSuffix(suffix) || $0.hasSuffix(normal) } || normal == "/"
        }
        // Quoted `~` and `*` are not expanded: `rm -rf "~"` removes a file named ~.
        if word.quoted, path.contains("*") || path.hasPrefix("~") { return false }
        if protectedPaths.contains(path) { return true }
        if path.hasSuffix("/*") { return protectedPaths.contains(String(path.dropLast(2))) || isProtected(ShellWord(text: String(path.dropLast(2)), position: 0, expands: word.expands)) }
        return false
    }

    /// What follows a path's leading expansion when the rest has none (`$TMPDIR/cache`, `${X:?}/build`,
    /// `$(pwd)/x`: `/cache`, `/build`, `/x`); nil when the rest is not plain.
    static func plainEnding(_ path: String) -> String? {
        let bytes = Array(path.utf8)
        var index = 1
        if path.hasPrefix("${") || path.hasPrefix("$(") || path.hasPrefix("`") {
            // To the bracket that closes the first (`${X:-${Y}/etc}` as a whole); an expansion inside is not plain.
            let open: UInt8 = path.hasPrefix("${") ? UInt8(ascii: "{") : UInt8(ascii: "(")
            let close: UInt8 = path.hasPrefix("${") ? UInt8(ascii: "}") : path.hasPrefix("$(") ? UInt8(ascii: ")") : UInt8(ascii: "`")
            var depth = 0
            var end: Int?
            for at in (path.hasPrefix("`") ? 1 : 1)..<bytes.count {
                if bytes[at] == open, close != UInt8(ascii: "`") { depth += 1 }
                if bytes[at] == close {
                    depth -= 1
                    if depth <= 0 { end = at; break }
                }
            }
            guard let end else { return nil }
            let inner = bytes[2..<max(2, end)]
            if inner.contains(UInt8(ascii: "/")) { return nil }
            index = end + 1
        } else {
            while index < bytes.count, bytes[index].isASCIILetterOrDigit || bytes[index] == UInt8(ascii: "_") { index += 1 }
        }
        let rest = String(decoding: bytes[index...], as: UTF8.self)
        return rest.contains("$") || rest.contains("`") ? nil : rest
    }

    /// An absolute path without `.` segments, doubled slashes and `..` (read without following links):
    /// `/./etc`, `/usr/../etc` and `//etc//` are `/etc`. Other words are left as they are.
    static func lexicallyNormal(_ text: String) -> String {
        guard text.hasPrefix("/") else { return text }
        var parts: [Substring] = []
        for part in text.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    static func glob(_ pattern: String, _ text: String, pathname: Bool = false) -> Bool {
        fnmatch(pattern, text, pathname ? FNM_PATHNAME | FNM_PERIOD : 0) == 0
    }
}
