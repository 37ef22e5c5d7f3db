import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

// The one place errors and notices reach the user: what happened, and what to do.
Rectangle {
    id: bar
    objectName: "messageBar"
    visible: notices.kind !== ""
    implicitHeight: visible ? row.implicitHeight + 16 : 0
    color: notices.kind === "error" ? "#f8d7da" : notices.kind === "warning" ? "#fff3cd" : "#d1ecf1"
    border.color: notices.kind === "error" ? "#c0392b" : notices.kind === "warning" ? "#d39e00" : "#2a7fa0"
    Accessible.role: Accessible.AlertMessage
    Accessible.name: notices.text + " " + notices.hint

    RowLayout {
        id: row
        anchors.fill: parent
        anchors.margins: 8
        spacing: 10
        Label {
            text: notices.kind === "info" ? "\u2139" : "\u26a0"
            color: "#222"
            font.pixelSize: 18
        }
        ColumnLayout {
            Layout.fillWidth: true
            spacing: 2
            Label {
                objectName: "messageText"
                text: notices.text
                color: "#1b1b1b"
                font.bold: true
                wrapMode: Text.Wrap
                Layout.fillWidth: true
            }
            Label {
                objectName: "messageHint"
                text: notices.hint
                color: "#333"
                visible: text !== ""
                wrapMode: Text.Wrap
                Layout.fillWidth: true
            }
        }
        Button {
            objectName: "messageDismiss"
            text: "Dismiss"
            Accessible.name: "Dismiss message"
            onClicked: notices.dismiss()
        }
    }
}
