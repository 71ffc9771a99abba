import Foundation
import GatehouseCore
import GatehouseTestSupport
import Hummingbird
import Logging
import ServiceLifecycle
import Testing

/// The CLI when the server is not there, or is not Gatehouse: a prompt, one-line answer.
@Suite("CLI: reaching the server")
struct CLIReachTests {
    static func run(_ arguments: [String], url: String, connectTimeout: String = "") async throws -> (CommandResult, Double) {
        let started = Date()
        // The default wait (5 s) unless the test names one.
        let result = try await Command.run(try ServeProcess.binary().path, arguments,
                                           environment: ["GATEHOUSE_URL": url, "GATEHOUSE_TOKEN": "any-token-0123456789",
                                                         "GATEHOUSE_CONNECT_TIMEOUT": connectTimeout])
        return (result, Date().timeIntervalSince(started))
    }

    @Test("a closed port fails at once with a plain message, in text and in JSON")
    func closedPort() async throws {
        let port = try TestPorts.free()
        let (text, seconds) = try await Self.run(["check", "prod-db", "--role", "read"], url: "http://127.0.0.1:\(port)")
        #expect(text.status == 1)
        // "connection refused" (below) is said only when the port answered with a refusal, not after the 5 s
        // connect timeout; this bound only catches a hang like the old 60 s one (a debug binary starting while the
        // whole suite runs on two cores has taken 38 s).
        #expect(seconds < 50, "took \(seconds) s")
        let lines = text.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0] == "error: cannot reach Gatehouse at http://127.0.0.1:\(port): connection refused; is `gatehouse serve` running and GATEHOUSE_URL right?", "\(text)")
        let (json, _) = try await Self.run(["whoami", "--output", "json"], url: "http://127.0.0.1:\(port)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json)")
        #expect(object["code"] as? String == "error" && (object["error"] as? String)?.contains("connection refused") == true)
        let (unknown, _) = try await Self.run(["whoami"], url: "http://no-such-host.invalid:8080")
        #expect(unknown.stderr.contains("the host name cannot be resolved"), "\(unknown)")
    }

    /// A socket that listens and never answers (the kernel completes the connections): its descriptor and port.
    static func silentListener() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard listening else {
            close(fd)
            throw TestFailure("no listening socket on 127.0.0.1")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    @Test("an address that takes connections but gives no HTTP answer, or https asked of a plain-http server, is said within seconds")
    func silentOrWrongScheme() async throws {
        let (fd, silent) = try Self.silentListener()
        defer { close(fd) }
        let (quiet, seconds) = try await Self.run(["whoami"], url: "http://127.0.0.1:\(silent)")
        #expect(quiet.status == 1 && quiet.stderr.contains("takes connections but gave no HTTP answer within 5 seconds"), "\(quiet)")
        #expect(seconds < 50, "took \(seconds) s (the request deadline is a minute)")
        // GATEHOUSE_CONNECT_TIMEOUT sets the wait, and the message says it; a value that is not one is a usage error.
        let (patient, _) = try await Self.run(["whoami"], url: "http://127.0.0.1:\(silent)", connectTimeout: "1")
        #expect(patient.status == 1 && patient.stderr.contains("gave no HTTP answer within 1 second;"), "\(patient)")
        for bad in ["abc", "0", "301", "2.5"] {
            let (refused, _) = try await Self.run(["whoami"], url: "http://127.0.0.1:\(silent)", connectTimeout: bad)
            #expect(refused.status == 2 && refused.stderr == "error: GATEHOUSE_CONNECT_TIMEOUT '\(bad)' is not a number of seconds from 1 to 300; set it like 30, or unset it for 5\n",
                    "\(refused)")
        }
        let router = Router()
        router.get("/healthz") { _, _ in "ok" }
        let server = await LocalHTTPServer.start(router, label: "plain-http")
        let (tls, _) = try await Self.run(["whoami"], url: "https://127.0.0.1:\(server.port)")
        await server.stop()
        #expect(tls.status == 1 && tls.stderr.contains("no TLS connection with https://127.0.0.1:\(server.port)"), "\(tls)")
        #expect(!tls.stderr.contains(".build") && tls.stderr.split(separator: "\n").count == 1, "\(tls)")
    }

    @Test("an address that answers with something else is said to be not Gatehouse")
    func notGatehouse() async throws {
        let router = Router()
        router.get("/v1/whoami") { _, _ in Response(status: .ok, headers: [.contentType: "text/html"], body: .init(byteBuffer: .init(string: "<html>login</html>"))) }
        let server = await LocalHTTPServer.start(router, label: "not-gatehouse")
        let port = server.port
        let (result, _) = try await Self.run(["whoami"], url: "http://127.0.0.1:\(port)")
        await server.stop()
        #expect(result.status == 1)
        #expect(result.stderr.contains("is not Gatehouse's (HTTP 200, text/html)") && !result.stderr.contains("<html>"), "\(result)")
    }

    @Test("an answer the contract does not describe fails the command instead of printing half of it")
    func answerOutsideTheContract() async throws {
        let router = Router()
        // `whoami` without the required `groups`; `check` with a decision openapi.yaml does not list.
        router.get("/v1/whoami") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: #"{"principal":"alice","admin":false}"#)))
        }
        router.post("/v1/check") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: .init(string: #"{"decision":"maybe","principal":"alice","resource":"prod-db","reason":"?"}"#)))
        }
        // A proxy in front answering 502 with no body: a refusal with its status, not a contract mismatch.
        router.get("/v1/grants") { _, _ in Response(status: .badGateway) }
        // Another server's JSON refusal is named as such, not printed as if Gatehouse had said it.
        router.get("/v1/tokens") { _, _ in
            Response(status: .unauthorized, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: #"{"message":"Unauthorized"}"#)))
        }
        let server = await LocalHTTPServer.start(router, label: "off-contract")
        let url = "http://127.0.0.1:\(server.port)"
        let (whoami, _) = try await Self.run(["whoami"], url: url)
        let (check, _) = try await Self.run(["check", "prod-db", "--role", "read", "--output", "json"], url: url)
        let (grants, _) = try await Self.run(["grants"], url: url)
        let (tokens, _) = try await Self.run(["token", "list"], url: url)
        await server.stop()
        #expect(grants.status == 1 && grants.stderr.contains("error (502): the server answered HTTP 502 without a body") && grants.stderr.contains("check GATEHOUSE_URL"), "\(grants)")
        #expect(tokens.status == 1 && tokens.stderr.contains("is not Gatehouse's (HTTP 401, application/json)") && !tokens.stderr.contains("Unauthorized"), "\(tokens)")
        #expect(whoami.status == 1 && whoami.stdout.isEmpty, "\(whoami)")
        #expect(whoami.stderr.contains("the answer to whoami does not match openapi.yaml"), "\(whoami)")
        // Not "allow", not exit 0: an unknown decision is never read as permission.
        #expect(check.status == 1, "\(check)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any], "\(check)")
        #expect((object["error"] as? String)?.contains("the answer to check does not match openapi.yaml") == true, "\(object)")
    }

    @Test("--version names the build")
    func version() async throws {
        let (result, _) = try await Self.run(["--version"], url: "http://127.0.0.1:1")
        #expect(result.status == 0 && result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "gatehouse \(BuildInfo.version)", "\(result)")
    }
}
