import Foundation

/// A settings, policy or secret file read whole as UTF-8 text, with why it could not be in words:
/// Foundation on Linux says "NSCocoaErrorDomain error 256" for a directory and the like.
public enum TextFile {
    public struct Unreadable: Error, CustomStringConvertible, Sendable, Equatable {
        public var why: String
        public var description: String { why }
    }

    public static func read(_ path: String) throws(Unreadable) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw Unreadable(why: "there is no such file")
        }
        if isDirectory.boolValue { throw Unreadable(why: "it is a directory, not a file") }
        guard FileManager.default.isReadableFile(atPath: path) else { throw Unreadable(why: "permission denied") }
        guard var data = FileManager.default.contents(atPath: path) else { throw Unreadable(why: "it could not be read") }
        // A byte order mark (editors on Windows write one) is not part of the text, least of all of a secret.
        if data.starts(with: [0xEF, 0xBB, 0xBF]) { data.removeFirst(3) }
        guard let text = String(validating: data, as: UTF8.self) else { throw Unreadable(why: "it is not UTF-8 text") }
        return text
    }
}
