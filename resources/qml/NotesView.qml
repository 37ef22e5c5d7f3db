pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Veraltheim

Item {
    id: view
    required property NotesController notes
    objectName: "notesView"

    RowLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 12

        ColumnLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            Label {
                text: "Shared notes" + (view.notes.status ? " \u2014 " + view.notes.status : "")
                font.bold: true
            }
            ScrollView {
                Layout.fillWidth: true
                Layout.fillHeight: true
                TextArea {
                    id: editor
                    objectName: "notesEditor"
                    Accessible.name: "Shared notes"
                    placeholderText: "Write here; everyone on the service sees it as you type."
                    wrapMode: TextEdit.Wrap
                    selectByMouse: true
                    enabled: view.notes.ready
                    // Remote edits replace the text; keep the caret where it was.
                    Connections {
                        target: view.notes
                        function onTextChanged() {
                            if (editor.text !== view.notes.text) {
                                const pos = view.notes.mapPosition(editor.cursorPosition)
                                editor.text = view.notes.text
                                editor.cursorPosition = Math.min(pos, editor.length)
                            }
                        }
                    }
                    Component.onCompleted: text = view.notes.text
                    onTextChanged: if (text !== view.notes.text) view.notes.edit(text)
                }
            }
        }
        GroupBox {
            title: "In this document"
            Layout.preferredWidth: 220
            Layout.fillHeight: true
            ListView {
                id: people
                objectName: "notesPeople"
                Accessible.name: "People in the notes"
                anchors.fill: parent
                clip: true
                model: view.notes.people
                delegate: Label {
                    required property string user
                    required property string detail
                    text: "\u25cf " + user + (detail ? "  (" + detail + ")" : "")
                    width: people.width
                    elide: Text.ElideRight
                }
                Label {
                    anchors.centerIn: parent
                    visible: people.count === 0
                    opacity: 0.6
                    text: "Nobody (offline)"
                }
            }
        }
    }
}
