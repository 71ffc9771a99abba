import Foundation
@testable import GatehouseServer
import Testing
import Yams

/// The server names a mistyped query parameter from its own table of the integer and boolean ones: the
/// table must be the API's.
@Suite("Query parameter types")
struct QueryParameterTableTests {
    @Test("the table of integer and boolean query parameters is openapi.yaml's")
    func tableMatchesTheSpecification() throws {
        let text = try String(contentsOf: ServeProcess.repositoryRoot.appendingPathComponent("openapi.yaml"), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        let shared = (document["components"] as? [String: Any])?["parameters"] as? [String: Any] ?? [:]
        var found: [String: Set<String>] = [:]
        for case let item as [String: Any] in (document["paths"] as? [String: Any] ?? [:]).values {
            for case let operation as [String: Any] in item.values {
                for case var parameter as [String: Any] in operation["parameters"] as? [Any] ?? [] {
                    if let reference = parameter["$ref"] as? String, let name = reference.split(separator: "/").last {
                        parameter = shared[String(name)] as? [String: Any] ?? [:]
                    }
                    guard parameter["in"] as? String == "query", let name = parameter["name"] as? String,
                          let type = (parameter["schema"] as? [String: Any])?["type"] as? String,
                          ["integer", "boolean"].contains(type) else { continue }
                    found[name, default: []].insert(type)
                }
            }
        }
        #expect(!found.isEmpty)
        let table = Problem.typedQueryParameters.mapValues { Set([$0.rawValue]) }
        #expect(found == table, "openapi.yaml: \(found); the server's table: \(table)")
    }

    @Test("values read as the generated layer reads them")
    func reading() {
        #expect(QueryParameterKind.integer.reads("42") && !QueryParameterKind.integer.reads("abc") && !QueryParameterKind.integer.reads("1.5"))
        #expect(QueryParameterKind.boolean.reads("true") && !QueryParameterKind.boolean.reads("yes"))
        #expect(QueryParameterKind(Int.self) == .integer && QueryParameterKind(Int64.self) == .integer && QueryParameterKind(Bool.self) == .boolean)
        #expect(QueryParameterKind(String.self) == nil)
    }
}
